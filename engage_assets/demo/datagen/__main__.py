"""`python -m engage_assets.demo.datagen`: see `main`."""

from engage_assets.demo.datagen import main

main()
