import JobSyncCore

/// Drives jobs through `queued → processing → completed | failed` like the classification service does.
public struct JobSimulator: Sendable {
    /// Simulation settings.
    public struct Configuration: Sendable {
        /// Pages per document, picked uniformly.
        public var pages: ClosedRange<Int> = 1...8
        /// Time a job waits in `queued` before processing starts.
        public var queueDelay: Duration = .milliseconds(100)
        /// Time per page.
        public var pageInterval: Duration = .milliseconds(100)
        /// Fraction of jobs that end `failed` (0…1).
        public var failureRate = 0.2
        /// Fraction of pages of a completed job that fail (`success: false`).
        public var pageFailureRate = 0.1
        /// Seed for every random choice (same seed, same jobs and outcomes).
        public var seed: UInt64 = 42
        /// Write statuses in mixed case (`PROCESSING`, `Completed`) as some deployments do.
        public var mixedCaseStatuses = false

        /// Default settings.
        public init() {}
    }

    /// The documented failure messages.
    public static let errorMessages = [
        "Failed to process PDF: File appears to be corrupted",
        "Invalid conditions format. Must be a valid JSON string.",
        "Failed to upload file to storage. Please try again.",
    ]

    static let labels = ["invoice", "receipt", "contract", "bank_statement", "tax_form", "id_document"]

    /// One job's planned life.
    public struct Plan: Sendable, Hashable {
        /// The job id.
        public var id: String
        /// Page count.
        public var pages: Int
        /// The error message if the job will fail.
        public var error: String?
        /// The page at which processing fails (0 = before processing starts).
        public var failAtPage: Int
        /// The final result for completed jobs.
        public var result: LocalJSON?
    }

    let backend: any JobsBackend
    let configuration: Configuration
    let clock: any Clock<Duration>

    /// Creates a simulator writing to `backend`, sleeping on `clock`.
    public init(
        backend: any JobsBackend, configuration: Configuration = Configuration(),
        clock: any Clock<Duration> = ContinuousClock()
    ) {
        self.backend = backend
        self.configuration = configuration
        self.clock = clock
    }

    /// Plans `count` jobs deterministically from the seed.
    public func plan(count: Int) -> [Plan] {
        var random = SplitMix64(seed: self.configuration.seed)
        return (0..<count).map { _ in
            let id = uuidString(using: &random)
            let pages = Int.random(in: self.configuration.pages, using: &random)
            if Double.random(in: 0..<1, using: &random) < self.configuration.failureRate {
                let error = JobSimulator.errorMessages.randomElement(using: &random)!
                // Corrupted PDFs fail mid-way; bad conditions and uploads fail before processing.
                let failAt = error.hasPrefix("Failed to process PDF") ? Int.random(in: 1...pages, using: &random) : 0
                return Plan(id: id, pages: pages, error: error, failAtPage: failAt, result: nil)
            }
            var pageResults: [LocalJSON] = []
            var scores: [String: Double] = [:]
            for page in 1...pages {
                if Double.random(in: 0..<1, using: &random) < self.configuration.pageFailureRate {
                    pageResults.append(
                        .object([
                            "page": .int(page), "success": .bool(false), "classification": .null, "confidence": .int(0),
                        ]))
                    continue
                }
                let label = JobSimulator.labels.randomElement(using: &random)!
                let confidence = (Double.random(in: 0.55...0.99, using: &random) * 100).rounded() / 100
                scores[label, default: 0] += confidence
                pageResults.append(
                    .object([
                        "page": .int(page), "success": .bool(true), "classification": .string(label),
                        "confidence": .double(confidence),
                    ]))
            }
            let processed = pageResults.filter { $0["success"] == .bool(true) }.count
            let best = scores.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }
            let overall = best.map { ($0.value / Double(max(processed, 1)) * 100).rounded() / 100 } ?? 0
            let result = LocalJSON.object([
                "classification": best.map { .string($0.key) } ?? .null,
                "confidence": .double(min(1, overall)),
                "total_pages": .int(pages),
                "processed_pages": .int(processed),
                "page_results": .array(pageResults),
            ])
            return Plan(id: id, pages: pages, error: nil, failAtPage: 0, result: result)
        }
    }

    private func status(_ value: String) -> LocalJSON {
        guard self.configuration.mixedCaseStatuses else { return .string(value) }
        switch value {
        case "processing": return .string("PROCESSING")
        case "completed": return .string("Completed")
        case "failed": return .string("FAILED")
        default: return .string(value)
        }
    }

    /// Inserts the planned jobs as `queued` and returns their plans.
    public func createJobs(count: Int) async throws -> [Plan] {
        let plans = self.plan(count: count)
        for plan in plans {
            _ = try await self.backend.insert([
                "id": .string(plan.id), "status": self.status("queued"), "progress": .string("Queued"),
            ])
        }
        return plans
    }

    /// Drives every planned job to its terminal state, concurrently. Returns when all are terminal.
    public func drive(_ plans: [Plan]) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for plan in plans {
                group.addTask { try await self.drive(plan) }
            }
            try await group.waitForAll()
        }
    }

    /// Creates `count` jobs and drives them to completion or failure.
    @discardableResult
    public func run(count: Int) async throws -> [Plan] {
        let plans = try await self.createJobs(count: count)
        try await self.drive(plans)
        return plans
    }

    private func drive(_ plan: Plan) async throws {
        let key = LocalJSON.string(plan.id)
        try await self.clock.sleep(for: self.configuration.queueDelay, tolerance: nil)
        if let error = plan.error, plan.failAtPage == 0 {
            _ = try await self.backend.update(
                primaryKey: key,
                set: [
                    "status": self.status("failed"), "error": .string(error), "progress": .null,
                ])
            return
        }
        for page in 1...plan.pages {
            _ = try await self.backend.update(
                primaryKey: key,
                set: [
                    "status": self.status("processing"),
                    "progress": .string("Processing page \(page) of \(plan.pages)"),
                ])
            try await self.clock.sleep(for: self.configuration.pageInterval, tolerance: nil)
            if let error = plan.error, page == plan.failAtPage {
                _ = try await self.backend.update(
                    primaryKey: key,
                    set: [
                        "status": self.status("failed"), "error": .string(error),
                    ])
                return
            }
        }
        _ = try await self.backend.update(
            primaryKey: key,
            set: [
                "status": self.status("completed"), "progress": .string("Completed"), "result": plan.result ?? .null,
            ])
    }
}
