// SupabaseLocal: a faithful local stand-in for Supabase Realtime + PostgREST + the classification status endpoint.
//
// Layout (written independently of RealtimeProtocol, which it must never import):
//   Backend/    JobsBackend contract (TableDescriptor, TableRow, TableChange), LocalJSON, LocalTimestamp,
//               InMemoryJobsBackend. Postgres/ (H4) implements the same contract over wal2json.
//   Auth/       HS256 JWTs (LocalJWTSigner), the exact failure texts per place (§1.3, §4.4, §8.1), revocation.
//   Realtime/   RealtimeSession: the per-socket protocol state machine (frames/timers in, frames/timers out, no I/O);
//               frames (V1 objects, V2 arrays), bindings and filters (§4.3, §6.1, §15), change payloads (§5).
//               RealtimeConnection drives one socket (NIO WebSocket frames, injected Clock).
//   REST/       PostgREST subset: query grammar, filters, order, paging, error bodies (§11).
//   Server/     SupabaseLocalStack (withRunning / run), the HTTP/1 upgrade channel that refuses handshakes with
//               real statuses and bodies, routes, admin API (/admin/v1/...), fault state.
//   Simulator/  JobSimulator: queued → processing → completed | failed, seeded.
