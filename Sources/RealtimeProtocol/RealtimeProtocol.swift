// RealtimeProtocol: see docs/ARCHITECTURE.md.
