import Testing

@testable import RealtimeProtocol

/// Deterministic mutations of every documented frame (a small, repeatable complement to Fuzz/run.sh):
/// each mutant decodes or throws a typed error, and whatever decodes round-trips through encode.
@Suite("Codec: mutated documented frames")
struct CodecMutationTests {
    static let replacements: [UInt8] = [0x00, 0x22, 0x5C, 0x5B, 0x7D, 0x2C, 0x30, 0xFF, 0xC3, 0xED]

    @Test("§2.1/§2.2 every byte deleted or replaced: typed error or a message that round-trips")
    func mutations() throws {
        var decoded = 0
        var rejected = 0
        for testCase in CodecFrameTests.cases {
            let serializer = PhoenixSerializer(version: testCase.version)
            let original = Array(testCase.frame.utf8)
            var mutants: [[UInt8]] = []
            for index in original.indices {
                var deleted = original
                deleted.remove(at: index)
                mutants.append(deleted)
                let replacement = Self.replacements[index % Self.replacements.count]
                var replaced = original
                replaced[index] = replacement
                mutants.append(replaced)
            }
            for mutant in mutants {
                do {
                    let message = try serializer.decode(textBytes: mutant)
                    decoded += 1
                    #expect(try serializer.decode(text: serializer.encode(message)) == message)
                    // Typed payload views must not trap on whatever payload survived.
                    _ = try? Reply(payload: message.payload)
                    _ = try? SystemMessage(payload: message.payload)
                    _ = try? PostgresChangesMessage(payload: message.payload)
                } catch {
                    rejected += 1
                    #expect(
                        [.malformedJSON, .malformedFrame, .nestingTooDeep].contains(error.code),
                        "unexpected code \(error.code)")
                }
            }
        }
        // Both outcomes occur: many mutants still parse (string content changed), many do not.
        #expect(decoded > 1000)
        #expect(rejected > 1000)
    }

    @Test("§2.3 every byte of a binary frame replaced: typed error, skip, or a message")
    func binaryMutations() {
        let serializer = PhoenixSerializer(version: .v2)
        let original = CodecBinaryTests.userBroadcast()
        for index in original.indices {
            for replacement in [UInt8(0), 1, 4, 0x7F, 0xFF] {
                var mutant = original
                mutant[index] = replacement
                do {
                    _ = try serializer.decode(binary: mutant)
                } catch {
                    #expect(error.code == .unsupportedBinaryFrame || error.code == .malformedJSON)
                }
            }
        }
    }
}
