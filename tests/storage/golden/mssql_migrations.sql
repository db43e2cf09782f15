BEGIN TRANSACTION;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

GO

-- Running upgrade  -> 0001

CREATE TABLE api_keys (
    id VARCHAR(40) NOT NULL, 
    tenant VARCHAR(64) NOT NULL, 
    display_name NVARCHAR(256) NOT NULL, 
    prefix VARCHAR(16) NOT NULL, 
    key_sha256 VARCHAR(64) NOT NULL, 
    create_time DATETIME2 NOT NULL, 
    revoke_time DATETIME2 NULL, 
    CONSTRAINT pk_api_keys PRIMARY KEY (id), 
    CONSTRAINT uq_api_keys_key_sha256 UNIQUE (key_sha256)
);

GO

CREATE TABLE contents (
    sha256 VARCHAR(64) NOT NULL, 
    size_bytes BIGINT NOT NULL, 
    inline_data VARBINARY(max) NULL, 
    blob_key VARCHAR(256) NULL, 
    create_time DATETIME2 NOT NULL, 
    CONSTRAINT pk_contents PRIMARY KEY (sha256)
);

GO

CREATE TABLE subscriptions (
    id VARCHAR(40) NOT NULL, 
    tenant VARCHAR(64) NOT NULL, 
    run_id VARCHAR(40) NOT NULL, 
    experiment_id VARCHAR(63) NOT NULL, 
    event_types NVARCHAR(max) NOT NULL, 
    webhook_url NVARCHAR(2048) NOT NULL, 
    webhook_secret VARCHAR(128) NOT NULL, 
    webhook_status NVARCHAR(max) NULL, 
    subscription_state INTEGER NOT NULL, 
    token_sha256 VARCHAR(64) NOT NULL, 
    create_time DATETIME2 NOT NULL, 
    CONSTRAINT pk_subscriptions PRIMARY KEY (id), 
    CONSTRAINT uq_subscriptions_token_sha256 UNIQUE (token_sha256)
);

GO

CREATE INDEX ix_subscriptions_tenant_create_time ON subscriptions (tenant, create_time);

GO

CREATE TABLE artifacts (
    id VARCHAR(40) NOT NULL, 
    tenant VARCHAR(64) NOT NULL, 
    kind VARCHAR(64) NOT NULL, 
    content_sha256 VARCHAR(64) NOT NULL, 
    create_time DATETIME2 NOT NULL, 
    CONSTRAINT pk_artifacts PRIMARY KEY (id), 
    CONSTRAINT fk_artifacts_content_sha256_contents FOREIGN KEY(content_sha256) REFERENCES contents (sha256)
);

GO

CREATE TABLE datasets (
    id VARCHAR(40) NOT NULL, 
    tenant VARCHAR(64) NOT NULL, 
    display_name NVARCHAR(256) NOT NULL, 
    description NVARCHAR(max) NOT NULL, 
    csv_options NVARCHAR(max) NOT NULL, 
    content_sha256 VARCHAR(64) NOT NULL, 
    size_bytes BIGINT NOT NULL, 
    row_count BIGINT NOT NULL, 
    column_profiles NVARCHAR(max) NOT NULL, 
    create_time DATETIME2 NOT NULL, 
    CONSTRAINT pk_datasets PRIMARY KEY (id), 
    CONSTRAINT fk_datasets_content_sha256_contents FOREIGN KEY(content_sha256) REFERENCES contents (sha256)
);

GO

CREATE INDEX ix_datasets_tenant_create_time ON datasets (tenant, create_time);

GO

CREATE TABLE experiments (
    pk INTEGER NOT NULL IDENTITY, 
    id VARCHAR(63) NOT NULL, 
    tenant VARCHAR(64) NOT NULL, 
    dataset_id VARCHAR(40) NOT NULL, 
    display_name NVARCHAR(256) NOT NULL, 
    description NVARCHAR(max) NOT NULL, 
    target_column NVARCHAR(1024) NOT NULL, 
    task INTEGER NOT NULL, 
    resolved_task INTEGER NOT NULL, 
    primary_metric INTEGER NOT NULL, 
    cv_folds INTEGER NOT NULL, 
    holdout_fraction FLOAT NOT NULL, 
    seed BIGINT NOT NULL, 
    allowed_model_families NVARCHAR(max) NOT NULL, 
    excluded_columns NVARCHAR(max) NOT NULL, 
    default_stop_conditions NVARCHAR(max) NOT NULL, 
    create_time DATETIME2 NOT NULL, 
    update_time DATETIME2 NOT NULL, 
    CONSTRAINT pk_experiments PRIMARY KEY (pk), 
    CONSTRAINT fk_experiments_dataset_id_datasets FOREIGN KEY(dataset_id) REFERENCES datasets (id), 
    CONSTRAINT uq_experiments_tenant_id UNIQUE (tenant, id)
);

GO

CREATE INDEX ix_experiments_dataset_id ON experiments (dataset_id);

GO

CREATE INDEX ix_experiments_tenant_create_time ON experiments (tenant, create_time);

GO

CREATE TABLE runs (
    id VARCHAR(40) NOT NULL, 
    tenant VARCHAR(64) NOT NULL, 
    experiment_pk INTEGER NOT NULL, 
    run_state INTEGER NOT NULL, 
    stop_reason INTEGER NOT NULL, 
    status_message NVARCHAR(max) NOT NULL, 
    stop_conditions NVARCHAR(max) NOT NULL, 
    parallel_workers INTEGER NOT NULL, 
    primary_metric INTEGER NOT NULL, 
    create_time DATETIME2 NOT NULL, 
    start_time DATETIME2 NULL, 
    end_time DATETIME2 NULL, 
    heartbeat_time DATETIME2 NULL, 
    runner_id VARCHAR(128) NOT NULL, 
    models_evaluated INTEGER NOT NULL, 
    models_failed INTEGER NOT NULL, 
    best_result_id VARCHAR(40) NULL, 
    best_score FLOAT NULL, 
    last_sequence BIGINT NOT NULL, 
    CONSTRAINT pk_runs PRIMARY KEY (id), 
    CONSTRAINT fk_runs_experiment_pk_experiments FOREIGN KEY(experiment_pk) REFERENCES experiments (pk) ON DELETE CASCADE
);

GO

CREATE INDEX ix_runs_experiment_pk_create_time ON runs (experiment_pk, create_time);

GO

CREATE INDEX ix_runs_run_state ON runs (run_state);

GO

CREATE INDEX ix_runs_tenant_create_time ON runs (tenant, create_time);

GO

CREATE TABLE events (
    global_sequence BIGINT NOT NULL IDENTITY, 
    tenant VARCHAR(64) NOT NULL, 
    run_id VARCHAR(40) NOT NULL, 
    experiment_pk INTEGER NOT NULL, 
    run_sequence BIGINT NOT NULL, 
    event_type INTEGER NOT NULL, 
    payload VARBINARY(max) NOT NULL, 
    create_time DATETIME2 NOT NULL, 
    CONSTRAINT pk_events PRIMARY KEY (global_sequence), 
    CONSTRAINT fk_events_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE, 
    CONSTRAINT uq_events_run_id_run_sequence UNIQUE (run_id, run_sequence)
);

GO

CREATE INDEX ix_events_experiment_pk_global_sequence ON events (experiment_pk, global_sequence);

GO

CREATE INDEX ix_events_tenant_global_sequence ON events (tenant, global_sequence);

GO

CREATE TABLE model_results (
    id VARCHAR(40) NOT NULL, 
    run_id VARCHAR(40) NOT NULL, 
    tenant VARCHAR(64) NOT NULL, 
    eval_order INTEGER NOT NULL, 
    job_id VARCHAR(64) NOT NULL, 
    model_family VARCHAR(128) NOT NULL, 
    pipeline_steps NVARCHAR(max) NOT NULL, 
    model_json NVARCHAR(max) NOT NULL, 
    outcome INTEGER NOT NULL, 
    error_message NVARCHAR(max) NOT NULL, 
    folds NVARCHAR(max) NOT NULL, 
    primary_score FLOAT NULL, 
    folds_run INTEGER NOT NULL, 
    fit_time_seconds FLOAT NOT NULL, 
    score_time_seconds FLOAT NOT NULL, 
    was_new_best BIT NOT NULL, 
    create_time DATETIME2 NOT NULL, 
    CONSTRAINT pk_model_results PRIMARY KEY (id), 
    CONSTRAINT fk_model_results_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE, 
    CONSTRAINT uq_model_results_run_id_eval_order UNIQUE (run_id, eval_order)
);

GO

CREATE TABLE model_result_metrics (
    result_id VARCHAR(40) NOT NULL, 
    metric INTEGER NOT NULL, 
    run_id VARCHAR(40) NOT NULL, 
    mean FLOAT NOT NULL, 
    std FLOAT NOT NULL, 
    train_mean FLOAT NULL, 
    CONSTRAINT pk_model_result_metrics PRIMARY KEY (result_id, metric), 
    CONSTRAINT fk_model_result_metrics_result_id_model_results FOREIGN KEY(result_id) REFERENCES model_results (id) ON DELETE CASCADE
);

GO

CREATE INDEX ix_model_result_metrics_run_id_metric_mean ON model_result_metrics (run_id, metric, mean);

GO

CREATE TABLE trained_models (
    id VARCHAR(40) NOT NULL, 
    tenant VARCHAR(64) NOT NULL, 
    result_id VARCHAR(40) NOT NULL, 
    run_id VARCHAR(40) NOT NULL, 
    experiment_pk INTEGER NOT NULL, 
    model_state INTEGER NOT NULL, 
    error_message NVARCHAR(max) NOT NULL, 
    task INTEGER NOT NULL, 
    feature_columns NVARCHAR(max) NOT NULL, 
    classes NVARCHAR(max) NOT NULL, 
    training_rows BIGINT NOT NULL, 
    fit_time_seconds FLOAT NOT NULL, 
    artifact_id VARCHAR(40) NULL, 
    holdout_evaluation NVARCHAR(max) NULL, 
    create_time DATETIME2 NOT NULL, 
    update_time DATETIME2 NOT NULL, 
    CONSTRAINT pk_trained_models PRIMARY KEY (id), 
    CONSTRAINT fk_trained_models_result_id_model_results FOREIGN KEY(result_id) REFERENCES model_results (id) ON DELETE CASCADE
);

GO

CREATE INDEX ix_trained_models_run_id ON trained_models (run_id);

GO

CREATE INDEX ix_trained_models_tenant_create_time ON trained_models (tenant, create_time);

GO

INSERT INTO alembic_version (version_num) OUTPUT inserted.version_num VALUES ('0001');

GO

-- Running upgrade 0001 -> 0002

EXEC sp_rename 'api_keys.prefix', key_prefix, 'COLUMN';

GO

CREATE INDEX ix_trained_models_result_id ON trained_models (result_id);

GO

CREATE INDEX ix_datasets_content_sha256 ON datasets (content_sha256);

GO

CREATE INDEX ix_artifacts_content_sha256 ON artifacts (content_sha256);

GO

CREATE INDEX ix_model_results_run_id_create_time ON model_results (run_id, create_time);

GO

DECLARE @drop NVARCHAR(MAX) = N'';
SELECT @drop = @drop + N'DROP STATISTICS ' + QUOTENAME(OBJECT_NAME(s.object_id)) + N'.' + QUOTENAME(s.name) + N';'
FROM sys.stats AS s
JOIN sys.stats_columns AS sc ON sc.object_id = s.object_id AND sc.stats_id = s.stats_id
JOIN sys.columns AS c ON c.object_id = sc.object_id AND c.column_id = sc.column_id
WHERE s.auto_created = 1 AND c.name = N'tenant' AND OBJECT_NAME(s.object_id) IN (N'api_keys', N'artifacts', N'datasets', N'events', N'experiments', N'model_results', N'runs', N'subscriptions', N'trained_models');
EXEC sp_executesql @drop;

GO

ALTER TABLE api_keys ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL;

GO

ALTER TABLE artifacts ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL;

GO

DROP INDEX ix_datasets_tenant_create_time ON datasets;

GO

ALTER TABLE datasets ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL;

GO

CREATE INDEX ix_datasets_tenant_create_time ON datasets (tenant, create_time);

GO

DROP INDEX ix_events_tenant_global_sequence ON events;

GO

ALTER TABLE events ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL;

GO

CREATE INDEX ix_events_tenant_global_sequence ON events (tenant, global_sequence);

GO

ALTER TABLE experiments DROP CONSTRAINT uq_experiments_tenant_id;

GO

DROP INDEX ix_experiments_tenant_create_time ON experiments;

GO

ALTER TABLE experiments ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL;

GO

CREATE INDEX ix_experiments_tenant_create_time ON experiments (tenant, create_time);

GO

ALTER TABLE experiments ADD CONSTRAINT uq_experiments_tenant_id UNIQUE (tenant, id);

GO

ALTER TABLE model_results ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL;

GO

DROP INDEX ix_runs_tenant_create_time ON runs;

GO

ALTER TABLE runs ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL;

GO

CREATE INDEX ix_runs_tenant_create_time ON runs (tenant, create_time);

GO

DROP INDEX ix_subscriptions_tenant_create_time ON subscriptions;

GO

ALTER TABLE subscriptions ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL;

GO

CREATE INDEX ix_subscriptions_tenant_create_time ON subscriptions (tenant, create_time);

GO

DROP INDEX ix_trained_models_tenant_create_time ON trained_models;

GO

ALTER TABLE trained_models ALTER COLUMN tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL;

GO

CREATE INDEX ix_trained_models_tenant_create_time ON trained_models (tenant, create_time);

GO

UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001';

GO

-- Running upgrade 0002 -> 0003

ALTER TABLE runs ADD models_stopped INTEGER NOT NULL CONSTRAINT df_runs_models_stopped DEFAULT 0;

GO

ALTER TABLE runs DROP CONSTRAINT df_runs_models_stopped;

GO

ALTER TABLE runs ADD notes NVARCHAR(max) NULL;

GO

ALTER TABLE model_results ADD sample_rows INTEGER NULL;

GO

ALTER TABLE model_results ADD job_type VARCHAR(64) NULL;

GO

ALTER TABLE model_results ADD ensemble_members NVARCHAR(max) NULL;

GO

UPDATE alembic_version SET version_num='0003' WHERE alembic_version.version_num = '0002';

GO

-- Running upgrade 0003 -> 0004

ALTER TABLE trained_models ADD includes_holdout BIT NULL;

GO

ALTER TABLE model_results ADD predictions_artifact_id VARCHAR(40) NULL;

GO

UPDATE alembic_version SET version_num='0004' WHERE alembic_version.version_num = '0003';

GO

-- Running upgrade 0004 -> 0005

CREATE TABLE tenant_locks (
    tenant VARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL, 
    lock_time DATETIME2 NOT NULL, 
    CONSTRAINT pk_tenant_locks PRIMARY KEY (tenant)
);

GO

UPDATE alembic_version SET version_num='0005' WHERE alembic_version.version_num = '0004';

GO

-- Running upgrade 0005 -> 0006

ALTER TABLE runs ADD queue_time DATETIME2 NULL;

GO

ALTER TABLE runs ADD claim_time DATETIME2 NULL;

GO

ALTER TABLE runs ADD takeovers INTEGER NULL;

GO

ALTER TABLE runs ADD prior_search_seconds FLOAT NULL;

GO

UPDATE alembic_version SET version_num='0006' WHERE alembic_version.version_num = '0005';

GO

-- Running upgrade 0006 -> 0007

ALTER TABLE events ADD event_id VARCHAR(64) COLLATE Latin1_General_100_BIN2 NULL;

GO

CREATE UNIQUE INDEX uq_events_tenant_event_id ON events (tenant, event_id) WHERE event_id IS NOT NULL;

GO

UPDATE alembic_version SET version_num='0007' WHERE alembic_version.version_num = '0006';

GO

COMMIT;

GO

