"""The request bodies the operators build, one module per kind of run (a DAG file pays only for its own)."""
