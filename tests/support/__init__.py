"""Test harnesses shared by tests/ and bench/: real processes (a local federation, a cluster of
separately started programs, MariaDB, Redis, COS and S3 servers), a FATE-Serving test server, a
rollsite test router, network namespaces, a fake Kubernetes API server and test certificates."""
