"""A party's agent: its model store, archives, deploys and transfers, served over gRPC."""
