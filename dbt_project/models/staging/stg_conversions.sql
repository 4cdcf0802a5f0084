-- What the business's systems recorded (the `business` source: your table in production, named by the dbt vars
-- `conversions_schema` / `conversions_table`; the response simulator's Parquet files locally), typed.
{{ platform_source('conversions', {
    'conversion_id': 'varchar',
    'customer_id': 'varchar',
    'conversion_type': 'varchar',
    'occurred_at': 'timestamp',
    'value_usd': 'double',
    'order_id': 'varchar',
    'offer_code': 'varchar',
    'program_id': 'varchar',
    'simulated': 'boolean',
    'loaded_at': 'timestamp',
}, source_name='business') }}
