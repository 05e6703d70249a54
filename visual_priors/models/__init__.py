"""Decoder LM, vision towers, projector, sharding rules and checkpoint import/export."""
