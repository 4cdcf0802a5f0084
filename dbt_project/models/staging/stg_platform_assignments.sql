-- Every candidate the platform stored, the holdout included (engage_assets.domain.history), typed.
{{ platform_source('platform_assignments', {
    'offer_id': 'varchar',
    'customer_id': 'varchar',
    'program_id': 'varchar',
    'partition_key': 'varchar',
    'subject_id': 'varchar',
    'segment': 'varchar',
    'offer_type': 'varchar',
    'holdout': 'boolean',
    'amount_usd': 'double',
    'assigned_date': 'date',
    'loaded_at': 'timestamp',
}) }}
