"""The database: the pooled engine and its health probe, the tables, the migrations."""
