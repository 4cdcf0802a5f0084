-- The rows the batch programs rejected, with stage, filter and reason (written by the warehouse per partition).
{{ config(enabled=target.type == 'duckdb') }}
{{ platform_source('rejected_candidates', {
    'customer_id': 'varchar',
    'subject_id': 'varchar',
    'stage': 'varchar',
    'filter_id': 'varchar',
    'reason': 'varchar',
    'program_id': 'varchar',
    'partition_key': 'varchar',
}, source_name='engage_stages') }}
