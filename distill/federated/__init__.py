"""pocketrec.distill.federated: the server side of on-device personalization.

Devices fit the shared code-bias adapter on their own events and upload a clipped, noised
change (`Recommender.federated_update`, a `pocketrec-update/2` JSON payload). This package:

- `updates`: checks each upload (schema, bundle, model and version, size, shape, values) and
  says why one
  is rejected;
- `aggregate`: combines the accepted uploads with Flower's FedAvg, FedMedian or FedTrimmedAvg,
  inside a Flower strategy that runs the rounds;
- `privacy`: the privacy spent, from dp-accounting's RDP accountant;
- `publish`: writes the result as a new bundle version the SDK opens like any other;
- `simulate`: the whole loop on a dataset with Flower's simulation engine (`pocketrec federated
  simulate`).

Privacy model, stated plainly: the server sees every upload on its own. What protects a user
against the server is the noise each device adds before uploading (local DP; `epsilon.local` in
the reports). Central accounting (`epsilon.central`) covers only what is published, the shared
adapter, and only for FedAvg with server-added noise; see `privacy`.

Importing this package imports neither Flower nor Ray; its modules do, when used.
"""

import os

AGGREGATORS = ("fedavg", "median", "trimmed")  # FedAvg, FedMedian, FedTrimmedAvg (Flower)
ATTACKS = ("scale", "flip", "promote")  # what simulated malicious devices upload (see config)

# Flower sends usage telemetry unless told not to; build and test machines are offline, and a
# server that handles users' updates should not phone home by default. Set before flwr loads.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
