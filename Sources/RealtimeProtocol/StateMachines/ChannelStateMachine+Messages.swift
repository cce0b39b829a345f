// Inbound message handling for ChannelStateMachine: replies, phx_close, phx_error, system and postgres_changes.

import JobSyncCore

extension ChannelStateMachine {
    /// An inbound message on this channel's topic. Decodes its payload, applies the stale join-ref guard
    /// (§9.1, §15.3) and routes `postgres_changes` to bindings by id and event (§5.5).
    package mutating func receive(_ message: PhoenixMessage, refs: inout RefCounter) -> [Action] {
        switch message.event {
        case .reply:
            return self.receiveReply(message, refs: &refs)
        case .close, .error:
            // V2 frames carry the join ref; V1 server frames do not, but for these two events ref == join ref
            // (§2.1, §2.2), so the ref stands in for it.
            guard let current = self.currentJoinRef else { return [.ignored(.staleJoinRef)] }
            if let joinRef = message.joinRef ?? message.ref, joinRef != current { return [.ignored(.staleJoinRef)] }
            return message.event == .close ? self.receiveClose(refs: &refs) : self.receiveError(refs: &refs)
        case .system:
            if let joinRef = message.joinRef, joinRef != self.currentJoinRef { return [.ignored(.staleJoinRef)] }
            return self.receiveSystem(message.payload)
        case .postgresChanges:
            if let joinRef = message.joinRef, joinRef != self.currentJoinRef { return [.ignored(.staleJoinRef)] }
            return self.receiveChange(message.payload)
        case .broadcast:
            // Live rows carry no join ref; replayed ones carry the join's (§B4).
            if let joinRef = message.joinRef, joinRef != self.currentJoinRef { return [.ignored(.staleJoinRef)] }
            return self.receiveBroadcast(message.payload)
        default:
            return [.ignored(.unhandledEvent(message.event))]
        }
    }

    // MARK: Replies

    private mutating func receiveReply(_ message: PhoenixMessage, refs: inout RefCounter) -> [Action] {
        if let joinRef = message.joinRef, joinRef != self.currentJoinRef { return [.ignored(.staleJoinRef)] }
        guard let ref = message.ref else { return [.ignored(.unexpectedReply)] }
        let reply: Reply
        do {
            reply = try Reply(payload: message.payload)
        } catch {
            return [.ignored(.malformedPayload(error.description))]
        }
        switch self.state {
        case .joining(let joinRef?) where joinRef == ref:
            return self.receiveJoinReply(reply, joinRef: joinRef, refs: &refs)
        case .leaving(_, let leaveRef) where leaveRef == ref:
            // Any reply (ok, or error such as "unmatched topic") ends the leave.
            return self.endLeave(cancelling: [.cancelTimer(.leaveTimeout(leaveRef))], refs: &refs)
        case .closed, .joining, .joined, .errored, .awaitingToken, .leaving:
            // A reply to an abandoned join or leave, or to an `access_token` push (the server only answers those
            // with an error).
            return [.ignored(.unexpectedReply)]
        }
    }

    private mutating func receiveJoinReply(_ reply: Reply, joinRef: Ref, refs: inout RefCounter) -> [Action] {
        let cancel: [Action] = [.cancelTimer(.joinTimeout(joinRef))]
        switch reply.status {
        case .ok:
            let joinReply: JoinReply
            do {
                joinReply = try JoinReply(response: reply.response)
            } catch {
                return self.rejectBindings(joinRef: joinRef, detail: error.description, refs: &refs)
            }
            guard joinReply.matches(self.bindings) else {
                return self.rejectBindings(
                    joinRef: joinRef, detail: Self.mismatchDetail(joinReply, self.bindings), refs: &refs)
            }
            self.rejoinAttempts = 0
            // With no bindings there is no postgres subscription and no system ok to wait for; broadcast subscribers
            // join with `replication_ready` and wait for its ok (§B3).
            var awaiting: Readiness = []
            if !self.bindings.isEmpty { awaiting.insert(.postgresChanges) }
            if !self.broadcastFanOut.isEmpty { awaiting.insert(.replication) }
            self.state = .joined(joinRef: joinRef, bindingIDs: joinReply.postgresChanges.map(\.id), awaiting: awaiting)
            return cancel + self.report(.joined) + (awaiting.isEmpty ? self.report(.live) : [])
        case .error, .other:
            let reason = reply.errorReason ?? ErrorReason(reply.response["reason"]?.stringValue ?? "join refused")
            switch reason.kind {
            case .tokenExpired:
                return self.awaitToken(reason, cancelling: cancel)
            case .rateLimited:
                return self.becomeRateLimited(reason, cancelling: cancel)
            case .unauthorized, .invalidToken, .serverRestarting, .transient, .replicationNotReady, .other:
                // Like Phoenix, keep retrying on the rejoin schedule (§9.3); each refusal costs the server 5 s. A
                // private channel's `Unauthorized: You do not have permissions to read …` (§B2) lands here too.
                return self.becomeErrored(.joinRejected(reason), cancelling: cancel)
            }
        }
    }

    /// The join reply's bindings do not match the request (§4.3): leave that join and retry later.
    private mutating func rejectBindings(joinRef: Ref, detail: String, refs: inout RefCounter) -> [Action] {
        let leave = self.leaveMessage(joinRef, ref: refs.next())
        return self.becomeErrored(
            .bindingMismatch(detail), cancelling: [.cancelTimer(.joinTimeout(joinRef)), .push(leave)])
    }

    static func mismatchDetail(_ reply: JoinReply, _ requested: [PostgresChangeBinding]) -> String {
        if reply.postgresChanges.count != requested.count {
            return "mismatch between server and client bindings for postgres changes: "
                + "requested \(requested.count), server echoed \(reply.postgresChanges.count)"
        }
        let index = requested.indices.first { !reply.postgresChanges[$0].matches(requested[$0]) } ?? 0
        return "mismatch between server and client bindings for postgres changes at index \(index)"
    }

    // MARK: Close and error

    private mutating func receiveClose(refs: inout RefCounter) -> [Action] {
        switch self.state {
        case .leaving(_, let leaveRef):
            return self.endLeave(cancelling: [.cancelTimer(.leaveTimeout(leaveRef))], refs: &refs)
        case .joining(let joinRef?):
            return self.closedByServer(cancelling: [.cancelTimer(.joinTimeout(joinRef))])
        case .joined:
            return self.closedByServer(cancelling: [])
        case .closed, .joining(nil), .errored, .awaitingToken:
            return [.ignored(.staleJoinRef)]
        }
    }

    /// `phx_close` for the current join: no blind rejoin (§9.3), except after a token-expiry or rate-limit error.
    /// Otherwise the channel is closed for good: its subscribers are told and finished, and the machine forgotten.
    private mutating func closedByServer(cancelling: [Action]) -> [Action] {
        let systemError = self.pendingSystemError
        switch systemError?.kind {
        case .tokenExpired?:
            return self.awaitToken(systemError ?? ErrorReason("Token has expired"), cancelling: cancelling)
        case .rateLimited?:
            return self.becomeRateLimited(systemError ?? ErrorReason("Too many messages"), cancelling: cancelling)
        case .replicationNotReady?:
            // §B3: the replication connection may come up later; rejoin on the schedule.
            return self.becomeErrored(
                .replicationNotReady(systemError ?? ErrorReason("replication not ready")), cancelling: cancelling)
        case .unauthorized? where self.broadcastIsPrivate == true:
            // §B2: a refreshed token lost read access to a private channel. Keep the subscribers and rejoin on the
            // schedule (each attempt is refused after ~5 s until access comes back), telling them why.
            return self.becomeErrored(
                .accessRevoked(systemError ?? ErrorReason("access revoked")), cancelling: cancelling)
        case .unauthorized?, .invalidToken?, .serverRestarting?, .transient?, .other?, nil:
            let reason = Reason.serverClosed(systemError: systemError)
            self.state = .closed(reason)
            self.pendingSystemError = nil
            let closed = cancelling + self.report(.closed(reason))
            let subscribers = self.subscribers
            self.fanOut = []
            self.broadcastFanOut = []
            return closed + [.finishSubscribers(subscribers, reason), .removeChannel]
        }
    }

    private mutating func receiveError(refs: inout RefCounter) -> [Action] {
        switch self.state {
        case .leaving(_, let leaveRef):
            return self.endLeave(cancelling: [.cancelTimer(.leaveTimeout(leaveRef))], refs: &refs)
        case .joining(let joinRef?):
            return self.becomeErrored(.serverError, cancelling: [.cancelTimer(.joinTimeout(joinRef))])
        case .joined:
            return self.becomeErrored(.serverError, cancelling: [])
        case .closed, .joining(nil), .errored, .awaitingToken:
            return [.ignored(.staleJoinRef)]
        }
    }

    // MARK: System messages

    private mutating func receiveSystem(_ payload: JSONValue) -> [Action] {
        let system: SystemMessage
        do {
            system = try SystemMessage(payload: payload)
        } catch {
            return [.ignored(.malformedPayload(error.description))]
        }
        if system.isPostgresChangesOK {
            guard case .joined(let joinRef, let ids, var awaiting) = self.state else { return [.ignored(.notJoined)] }
            awaiting.remove(.postgresChanges)
            self.state = .joined(joinRef: joinRef, bindingIDs: ids, awaiting: awaiting)
            // Reported every time: after a token refresh the server re-subscribes and says ok again (§4.5), which
            // is the cue for consumers to catch up on what the re-subscription may have missed. A broadcast
            // channel still waiting for its replication ok reports it then.
            return awaiting.isEmpty ? self.report(.live) : []
        }
        if system.isPostgresChangesError {
            // The channel stays open (§4.5), but changes are not flowing: no longer live until the next ok.
            var actions: [Action] = [.notify(self.subscribers, .postgresChangesError(system.message))]
            if case .joined(let joinRef, let ids, let awaiting) = self.state, !awaiting.contains(.postgresChanges) {
                self.state = .joined(joinRef: joinRef, bindingIDs: ids, awaiting: awaiting.union(.postgresChanges))
                if awaiting.isEmpty { actions += self.report(.joined) }
            }
            return actions
        }
        if system.isReplicationReady {
            // §B3: "Replication connection established", pushed once per join that asked for `replication_ready`.
            guard case .joined(let joinRef, let ids, var awaiting) = self.state, awaiting.contains(.replication) else {
                return [.ignored(.unhandledSystemMessage(system))]
            }
            awaiting.remove(.replication)
            self.state = .joined(joinRef: joinRef, bindingIDs: ids, awaiting: awaiting)
            return awaiting.isEmpty ? self.report(.live) : []
        }
        if system.isChannelError {
            guard self.currentJoinRef != nil else { return [.ignored(.notJoined)] }
            // A phx_close follows immediately (§4.5, §8.2); remember why so the close can be interpreted.
            self.pendingSystemError = system.errorReason
            return [.notify(self.subscribers, .channelError(system.errorReason))]
        }
        return [.ignored(.unhandledSystemMessage(system))]
    }

    // MARK: postgres_changes

    private func receiveChange(_ payload: JSONValue) -> [Action] {
        guard case .joined(_, let ids, _) = self.state else { return [.ignored(.notJoined)] }
        let message: PostgresChangesMessage
        do {
            message = try PostgresChangesMessage(payload: payload)
        } catch {
            return [.ignored(.malformedPayload(error.description))]
        }
        // §5.5: a binding matches when its id is listed (in any order, §15.5) and its event is `*` or the type.
        let listed = message.ids  // a handful at most: a linear search allocates nothing
        let bindings = self.bindings
        // The event check is case-insensitive (§5.5); an unknown type only matches `*` bindings.
        let changeEvent = PostgresChangeEvent(wireValue: message.change.type.rawValue)
        var targets: [Int] = []
        for (index, id) in ids.enumerated() where index < bindings.count {
            let event = bindings[index].event
            if listed.contains(id) && (event == .all || event == changeEvent) {
                targets.append(index)
            }
        }
        guard !targets.isEmpty else { return [.ignored(.unroutableChange)] }
        return [.notify(targets.flatMap { self.fanOut[$0].subscribers }, .change(message.change))]
    }
}
