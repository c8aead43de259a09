"""homo-deploy: converted homo models served by KServe / KFServing (``flow model homo-deploy``)."""
