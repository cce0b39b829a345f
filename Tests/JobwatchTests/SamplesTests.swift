import Foundation
import SupabaseLocal
import Testing

/// The two programs in Samples/ run against a local stack, as a user would run them against a project.
@Suite("Samples against SupabaseLocal")
struct SamplesTests {
    /// A sample executable built next to `jobwatch`.
    private func sample(_ name: String) throws -> URL {
        let jobwatch = try #require(BinaryRunner.executable, "build the package first (swift build)")
        return jobwatch.deletingLastPathComponent().appendingPathComponent(name)
    }

    private let invoice: LocalJSON = .object([
        "classification": .string("Invoice"), "confidence": .number("0.93"), "total_pages": .number("2"),
        "processed_pages": .number("2"),
        "page_results": .array([
            .object(["page": .number("1"), "success": .bool(true), "classification": .string("Invoice"),
                     "confidence": .number("0.95")]),
            .object(["page": .number("2"), "success": .bool(true), "classification": .string("Invoice"),
                     "confidence": .number("0.91")]),
        ]),
    ])

    @Test("ClassificationPipeline routes a completed document by label and rejects a failed one with its error")
    func pipeline() async throws {
        let binary = try self.sample("ClassificationPipeline")
        try await SupabaseLocal.withRunning { stack in
            let done = try await stack.backend.insert(["status": .string("completed"), "result": self.invoice])
            let failed = try await stack.backend.insert([
                "status": .string("failed"), "error": .string("Failed to process PDF: File appears to be corrupted"),
            ])
            let ids = try [done, failed].map { try #require($0["id"]?.stringValue) }
            let result = try await BinaryRunner.run(
                ids,
                environment: ["SUPABASE_URL": stack.baseURL.absoluteString, "SUPABASE_ANON_KEY": stack.anonKey],
                executable: binary)
            #expect(result.status == 1)
            #expect(result.stdoutLines.contains("route \(ids[0]) archive/invoice"))
            #expect(result.stdoutLines.contains("reject \(ids[1]) Failed to process PDF: File appears to be corrupted"))
        }
    }

    @Test("JobReactor reacts to each outcome once and shuts down gracefully")
    func reactor() async throws {
        let binary = try self.sample("JobReactor")
        try await SupabaseLocal.withRunning { stack in
            let done = try await stack.backend.insert(["status": .string("completed"), "result": self.invoice])
            let failed = try await stack.backend.insert([
                "status": .string("failed"), "error": .string("Failed to upload file to storage. Please try again."),
            ])
            let ids = try [done, failed].map { try #require($0["id"]?.stringValue) }
            let result = try await BinaryRunner.run(
                [],
                environment: [
                    "SUPABASE_URL": stack.baseURL.absoluteString, "SUPABASE_ANON_KEY": stack.anonKey,
                    "JOBREACTOR_EXIT_AFTER": "2",
                ],
                executable: binary)
            #expect(result.status == 0)
            #expect(result.stdoutLines.contains("completed \(ids[0]) Invoice"))
            #expect(result.stdoutLines.contains("failed \(ids[1]) Failed to upload file to storage. Please try again."))
            #expect(result.stdoutLines.count == 2)
        }
    }
}
