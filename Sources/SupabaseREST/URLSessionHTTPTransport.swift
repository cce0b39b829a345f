import Foundation
import NIOConcurrencyHelpers

#if canImport(FoundationNetworking)
    public import FoundationNetworking
#endif

/// ``HTTPTransport`` over Foundation's `URLSession` (libcurl on Linux).
///
/// The body is received piece by piece through a session delegate and counted as it arrives: a `Content-Length`
/// above ``HTTPRequest/maximumBodyBytes`` fails before any body is read, and a body that grows past it (chunked,
/// or longer than declared) stops the transfer there. Either way the request throws
/// ``RESTError/Code/responseTooLarge`` and memory never holds more than the cap, whatever the server sends.
public struct URLSessionHTTPTransport: HTTPTransport {
    private let session: URLSession
    private let delegate: SessionDelegate

    /// Creates a transport with its own session (default configuration: ephemeral, no cookies or cache on disk).
    public init(configuration: URLSessionConfiguration = .ephemeral) {
        let delegate = SessionDelegate()
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        queue.name = "SupabaseREST.URLSessionHTTPTransport"
        self.session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: queue)
        self.delegate = delegate
    }

    public func send(_ request: HTTPRequest) async throws(RESTError) -> HTTPResponse {
        guard let url = URL(string: request.url) else {
            throw RESTError(code: .invalidRequest, message: "the request URL is not valid")
        }
        guard request.maximumBodyBytes >= 0 else {
            throw RESTError(code: .invalidRequest, message: "the body cap must not be negative")
        }
        var urlRequest = URLRequest(url: url)
        urlRequest.httpMethod = request.method
        if let body = request.body { urlRequest.httpBody = Data(body) }
        // URLRequest takes seconds as a Double: this is the one conversion from Duration, at the boundary.
        let (seconds, attoseconds) = request.timeout.components
        urlRequest.timeoutInterval = Double(seconds) + Double(attoseconds) / 1e18
        for (name, value) in request.headers {
            urlRequest.setValue(value, forHTTPHeaderField: name)
        }
        do {
            return try await self.perform(urlRequest, limit: request.maximumBodyBytes)
        } catch let error as RESTError {
            throw error
        } catch let error as URLError {
            if error.code == .timedOut {
                throw RESTError(code: .timeout, message: "the request timed out after \(request.timeout)")
            }
            if error.code == .cancelled {
                throw RESTError(code: .transport, message: "the request was cancelled")
            }
            // URLError descriptions can contain the URL; report only the code.
            throw RESTError(code: .transport, message: "the request failed (URLError \(error.code.rawValue))")
        } catch {
            throw RESTError(code: .transport, message: "the request failed")
        }
    }

    /// Runs a data task whose body goes through ``SessionDelegate``.
    ///
    /// swift-corelibs-foundation 6.3 stops the process ("Trying to access a behaviour for a task that in not in the
    /// registry") when a `URLSessionTask` is cancelled while its completion is being delivered, and
    /// `URLSession.data(for:)` deadlocks when its task is cancelled while the response arrives. So a task is cancelled
    /// only from the session's own callbacks for it, while it is still delivering: a caller that is cancelled returns
    /// at once and leaves the task behind, and the next piece of the response that arrives stops it (as does a body
    /// over the cap). A task that has nothing more to deliver ends by itself, within the request's timeout.
    private func perform(_ request: URLRequest, limit: Int) async throws -> HTTPResponse {
        let exchange = Exchange(limit: limit)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, any Error>) in
                guard exchange.start(continuation) else {
                    continuation.resume(throwing: URLError(.cancelled))
                    return
                }
                let task = self.session.dataTask(with: request)
                self.delegate.register(exchange, for: task.taskIdentifier)
                task.resume()
            }
        } onCancel: {
            exchange.finish(.failure(URLError(.cancelled)))
        }
    }
}

/// The body cap's bookkeeping for one response, kept pure so it is tested without a network.
package struct BodyLimit: Sendable {
    /// The most body bytes accepted.
    package let maximumBytes: Int
    /// The bytes received so far (never more than ``maximumBytes``).
    package private(set) var body: [UInt8] = []

    package init(maximumBytes: Int) {
        self.maximumBytes = maximumBytes
    }

    /// Checks a declared `Content-Length` (negative or nil: unknown, checked as bytes arrive).
    package func check(declaredLength: Int64?) throws(RESTError) {
        guard let declaredLength, declaredLength > Int64(self.maximumBytes) else { return }
        throw RESTError(
            code: .responseTooLarge,
            message: "the response declares a body of \(declaredLength) bytes, over the cap of \(self.maximumBytes) bytes")
    }

    /// Keeps `bytes`, or throws when they would take the body past the cap (they are not kept then).
    package mutating func append(_ bytes: some Collection<UInt8>) throws(RESTError) {
        guard bytes.count <= self.maximumBytes - self.body.count else {
            throw RESTError(
                code: .responseTooLarge,
                message: "the response body exceeds the cap of \(self.maximumBytes) bytes; the transfer was stopped")
        }
        self.body.append(contentsOf: bytes)
    }
}

/// One request in flight: its continuation and the body received so far.
private final class Exchange: Sendable {
    private enum Phase {
        /// Created; the caller has not yet handed over its continuation.
        case pending
        /// The caller waits for the response.
        case running(CheckedContinuation<HTTPResponse, any Error>)
        /// The caller has its answer (or was cancelled); the task may still be delivering, and is stopped when it does.
        case finished
    }

    private struct State {
        var phase = Phase.pending
        var limit: BodyLimit
        var response: HTTPURLResponse?
    }

    private let state: NIOLockedValueBox<State>

    init(limit: Int) {
        self.state = NIOLockedValueBox(State(limit: BodyLimit(maximumBytes: limit)))
    }

    /// Records the caller's continuation; `false` when the caller was cancelled first.
    func start(_ continuation: CheckedContinuation<HTTPResponse, any Error>) -> Bool {
        self.state.withLockedValue { state in
            guard case .pending = state.phase else { return false }
            state.phase = .running(continuation)
            return true
        }
    }

    /// The response's head; `false` when the task is to be stopped (a declared body over the cap, or no caller).
    func received(_ response: URLResponse) -> Bool {
        let failure = self.state.withLockedValue { state -> RESTError? in
            guard case .running = state.phase else { return nil }
            guard let http = response as? HTTPURLResponse else { return nil }  // reported on completion
            state.response = http
            do throws(RESTError) {
                try state.limit.check(declaredLength: http.expectedContentLength >= 0 ? http.expectedContentLength : nil)
                return nil
            } catch {
                return error
            }
        }
        if let failure { self.finish(.failure(failure)) }
        return self.isRunning
    }

    /// A piece of the body; `false` when the task is to be stopped (the body passed the cap, or no caller).
    func received(_ data: Data) -> Bool {
        let failure = self.state.withLockedValue { state -> RESTError? in
            guard case .running = state.phase else { return nil }
            do throws(RESTError) {
                try state.limit.append(data)
                return nil
            } catch {
                return error
            }
        }
        if let failure { self.finish(.failure(failure)) }
        return self.isRunning
    }

    /// The session's completion.
    func completed(_ error: (any Error)?) {
        if let error {
            self.finish(.failure(error))
            return
        }
        let result: Result<HTTPResponse, any Error> = self.state.withLockedValue { state in
            guard let http = state.response else { return .failure(URLError(.badServerResponse)) }
            var headers: [String: String] = [:]
            for (key, value) in http.allHeaderFields {
                if let key = key as? String, let value = value as? String { headers[key.lowercased()] = value }
            }
            return .success(HTTPResponse(status: http.statusCode, headers: headers, body: state.limit.body))
        }
        self.finish(result)
    }

    /// Resumes the caller once.
    func finish(_ result: Result<HTTPResponse, any Error>) {
        let continuation = self.state.withLockedValue { state -> CheckedContinuation<HTTPResponse, any Error>? in
            defer {
                state.phase = .finished
                state.limit = BodyLimit(maximumBytes: 0)  // free what was received
            }
            guard case .running(let continuation) = state.phase else { return nil }
            return continuation
        }
        continuation?.resume(with: result)
    }

    private var isRunning: Bool {
        self.state.withLockedValue { state in
            if case .running = state.phase { return true }
            return false
        }
    }
}

/// Routes the session's callbacks to the ``Exchange`` of each task.
private final class SessionDelegate: NSObject, URLSessionDataDelegate, Sendable {
    private let exchanges = NIOLockedValueBox<[Int: Exchange]>([:])

    func register(_ exchange: Exchange, for id: Int) {
        self.exchanges.withLockedValue { $0[id] = exchange }
    }

    private func exchange(_ id: Int) -> Exchange? {
        self.exchanges.withLockedValue { $0[id] }
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
    ) {
        let wanted = self.exchange(dataTask.taskIdentifier)?.received(response) ?? false
        completionHandler(.allow)
        if !wanted { dataTask.cancel() }  // from the task's own callback (see `URLSessionHTTPTransport.perform`)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let wanted = self.exchange(dataTask.taskIdentifier)?.received(data) ?? false
        if !wanted { dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        let exchange = self.exchanges.withLockedValue { $0.removeValue(forKey: task.taskIdentifier) }
        exchange?.completed(error)
    }
}
