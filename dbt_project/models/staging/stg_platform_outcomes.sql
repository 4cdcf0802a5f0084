-- What the providers reported about the platform's touches (engage_assets.domain.loop_tables), typed.
{{ platform_source('platform_outcomes', {
    'event_id': 'varchar',
    'touch_ref': 'varchar',
    'program_id': 'varchar',
    'customer_id': 'varchar',
    'channel': 'varchar',
    'event_type': 'varchar',
    'occurred_at': 'timestamp',
    'provider_id': 'varchar',
    'simulated': 'boolean',
    'loaded_at': 'timestamp',
}) }}
