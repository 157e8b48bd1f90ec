"""The SQL of every dialect (migrations and named queries), shipped as package data."""
