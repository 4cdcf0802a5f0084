-- The offers the platform's batch programs made (engage_assets.domain.history), typed.
{{ platform_source('platform_offers', {
    'offer_id': 'varchar',
    'customer_id': 'varchar',
    'program_id': 'varchar',
    'partition_key': 'varchar',
    'subject_id': 'varchar',
    'segment': 'varchar',
    'offer_type': 'varchar',
    'offer_date': 'date',
    'order_id': 'varchar',
    'amount_usd': 'double',
    'loaded_at': 'timestamp',
}) }}
