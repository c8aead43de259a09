"""The coordinator: the federation-wide catalog and the multi-party operations, over gRPC and FATE's HTTP."""
