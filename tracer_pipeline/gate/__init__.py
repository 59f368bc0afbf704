"""Stage 4: the parity gate — acceptor, certified thresholds and the deployable router."""
