-- The store schema leadrelay created at commit 94c39f6 (before migrations), postgresql dialect.
-- Generated once from that commit's sync/store.py models; one statement per semicolon.
CREATE TABLE account (
	source VARCHAR NOT NULL, 
	key VARCHAR NOT NULL, 
	name VARCHAR, 
	domain VARCHAR, 
	industry VARCHAR, 
	employees INTEGER, 
	country VARCHAR, 
	annual_revenue FLOAT, 
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	attributes JSON NOT NULL, 
	content_hash VARCHAR NOT NULL, 
	PRIMARY KEY (source, key)
);
CREATE INDEX ix_account_domain ON account (domain);
CREATE TABLE activity (
	source VARCHAR NOT NULL, 
	key VARCHAR NOT NULL, 
	lead_key VARCHAR NOT NULL, 
	type VARCHAR NOT NULL, 
	occurred_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	attributes JSON NOT NULL, 
	PRIMARY KEY (source, key)
);
CREATE INDEX ix_activity_lead_time ON activity (source, lead_key, occurred_at);
CREATE TABLE cursor (
	pipeline VARCHAR NOT NULL, 
	stream VARCHAR NOT NULL, 
	value VARCHAR NOT NULL, 
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (pipeline, stream)
);
CREATE TABLE lead (
	source VARCHAR NOT NULL, 
	key VARCHAR NOT NULL, 
	email VARCHAR, 
	first_name VARCHAR, 
	last_name VARCHAR, 
	account_key VARCHAR, 
	owner_id VARCHAR, 
	country VARCHAR, 
	title VARCHAR, 
	lifecycle_stage VARCHAR, 
	created_at TIMESTAMP WITHOUT TIME ZONE, 
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	attributes JSON NOT NULL, 
	content_hash VARCHAR NOT NULL, 
	PRIMARY KEY (source, key)
);
CREATE INDEX ix_lead_account_key ON lead (account_key);
CREATE TABLE leadrelay_meta (
	key VARCHAR NOT NULL, 
	value VARCHAR NOT NULL, 
	PRIMARY KEY (key)
);
CREATE TABLE ledger (
	destination VARCHAR NOT NULL, 
	operation VARCHAR NOT NULL, 
	target VARCHAR NOT NULL, 
	payload_hash VARCHAR NOT NULL, 
	payload JSON NOT NULL, 
	remote_id VARCHAR, 
	acknowledged_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (destination, operation, target)
);
CREATE TABLE outbox (
	id SERIAL NOT NULL, 
	idempotency_key VARCHAR NOT NULL, 
	pipeline VARCHAR NOT NULL, 
	destination VARCHAR NOT NULL, 
	operation VARCHAR NOT NULL, 
	target VARCHAR NOT NULL, 
	payload_hash VARCHAR NOT NULL, 
	payload JSON NOT NULL, 
	reason VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	attempts INTEGER NOT NULL, 
	last_error VARCHAR, 
	remote_id VARCHAR, 
	run_id INTEGER, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (idempotency_key)
);
CREATE INDEX ix_outbox_due ON outbox (destination, status);
CREATE TABLE quarantine (
	id SERIAL NOT NULL, 
	run_id INTEGER, 
	source VARCHAR NOT NULL, 
	stream VARCHAR NOT NULL, 
	record_key VARCHAR, 
	reason VARCHAR NOT NULL, 
	raw JSON NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_quarantine_run_id ON quarantine (run_id);
CREATE TABLE rescore (
	source VARCHAR NOT NULL, 
	lead_key VARCHAR NOT NULL, 
	PRIMARY KEY (source, lead_key)
);
CREATE TABLE run (
	id SERIAL NOT NULL, 
	pipeline VARCHAR NOT NULL, 
	dry_run BOOLEAN NOT NULL, 
	started_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	finished_at TIMESTAMP WITHOUT TIME ZONE, 
	status VARCHAR NOT NULL, 
	counts JSON NOT NULL, 
	error VARCHAR, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_run_pipeline ON run (pipeline);
CREATE TABLE score (
	source VARCHAR NOT NULL, 
	lead_key VARCHAR NOT NULL, 
	probability FLOAT NOT NULL, 
	score INTEGER NOT NULL, 
	band VARCHAR NOT NULL, 
	reasons_positive JSON NOT NULL, 
	reasons_negative JSON NOT NULL, 
	model_version VARCHAR NOT NULL, 
	scored_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (source, lead_key)
);
