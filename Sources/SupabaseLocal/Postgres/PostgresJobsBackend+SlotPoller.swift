import Logging
import PostgresNIO
import NIOConcurrencyHelpers

// The slot poller of PostgresJobsBackend: a dedicated session with a temporary wal2json slot, read every
// `pollInterval` (at once again after a full batch), its changes decoded and fanned out to `changes()` streams.

extension PostgresJobsBackend {
    /// A new subscription to changes the poller reads from now on. Ends when ``run()`` returns.
    public func changes() -> AsyncStream<TableChange> {
        let (stream, continuation) = AsyncStream<TableChange>.makeStream()
        let id = self.state.withLockedValue { state -> Int? in
            guard !state.finished else { return nil }
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            return id
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLockedValue { _ = $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    func pollSlot() async throws {
        let connection = try await PostgresConnection.connect(
            configuration: Self.connectionConfiguration(self.configuration.url),
            id: 1,
            logger: self.logger
        )
        do {
            try await self.pollSlot(on: connection)
        } catch {
            // Closing the session drops the temporary slot.
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    private func pollSlot(on connection: PostgresConnection) async throws {
        let slot = self.configuration.slotName
        try await connection.query(
            PostgresQuery(unsafeSQL: PostgresJobsSQL.createTemporarySlot, binds: Self.binds(slot)),
            logger: self.logger
        )
        self.logger.debug("wal2json slot created", metadata: ["slot": "\(slot)"])
        self.ready.open()
        let limit = self.configuration.maxChangesPerPoll
        let query = PostgresQuery(unsafeSQL: PostgresJobsSQL.getChanges(maxChanges: limit), binds: Self.binds(slot))
        while !Task.isCancelled {
            let rows = try await connection.query(query, logger: self.logger)
            var count = 0
            for try await data in rows.decode(String.self) {
                count += 1
                self.handle(data)
            }
            if count > 0 {
                self.logger.trace("slot batch", metadata: ["changes": "\(count)"])
            }
            if count < limit {
                try await self.clock.sleep(for: self.configuration.pollInterval, tolerance: nil)
            }
        }
    }

    private func handle(_ data: String) {
        let outcome: Result<Wal2JSONDecoder.Outcome, any Error> = self.decoder.withLockedValue { decoder in
            Result { try decoder.decode(data) }
        }
        switch outcome {
        case .success(.otherTable):
            self.state.withLockedValue { $0.statistics.otherTableRows += 1 }
        case .failure(let error):
            self.state.withLockedValue { $0.statistics.malformedRows += 1 }
            self.logger.debug("skipped an undecodable wal2json row", metadata: ["error": "\(error)"])
        case .success(.undeliverableBroadcast):
            self.state.withLockedValue { $0.statistics.undeliverableBroadcasts += 1 }
        case .success(.broadcast(let row)):
            self.state.withLockedValue { state in
                state.statistics.deliveredBroadcasts += 1
                for continuation in state.broadcastSubscribers.values { continuation.yield(row) }
            }
        case .success(.change(let change)):
            // Yield under the lock so a subscriber added concurrently sees a clean cut.
            self.state.withLockedValue { state in
                state.statistics.deliveredChanges += 1
                for continuation in state.subscribers.values { continuation.yield(change) }
            }
        }
    }
}
