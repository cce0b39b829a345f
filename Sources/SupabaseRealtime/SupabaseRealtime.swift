// SupabaseRealtime: a Supabase Realtime client (Phoenix channels over a WebSocket) for `postgres_changes`.
//
// `RealtimeClient.run()` owns every background job: the connection and its read loop, the single writer, the
// heartbeat and all timers are child tasks of one task group. Protocol decisions are made by the synchronous
// state machines of `RealtimeProtocol` (`SocketStateMachine`, `ChannelStateMachine`); this module only executes
// their actions. The wire types (`PostgresChange`, `PostgresChangeEvent`, …) live in `RealtimeProtocol`, the JSON
// value (`JSONValue`) in `JobSyncCore`: a module that uses them imports them (nothing is re-exported); the state
// machines are `package`, not API.
