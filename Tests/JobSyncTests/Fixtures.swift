import JobSyncCore

@testable import JobSync

let idA = try! JobID("2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f")
let idB = try! JobID("8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11")
let idC = try! JobID("11111111-2222-3333-4444-555555555555")

/// A job row as PostgREST or Realtime would deliver it.
func row(
    _ id: JobID,
    status: String,
    updatedAt: String? = nil,
    progress: String? = nil,
    error: String? = nil,
    result: JSONValue? = nil,
    extra: JSONObject = [:]
) -> JSONObject {
    var columns: JSONObject = ["id": .string(id.rawValue), "status": .string(status)]
    if let updatedAt { columns["updated_at"] = .string(updatedAt) }
    if let progress { columns["progress"] = .string(progress) }
    if let error { columns["error"] = .string(error) }
    if let result { columns["result"] = result }
    for member in extra.members { columns[member.key] = member.value }
    return columns
}

func observe(
    _ columns: JSONObject,
    source: ObservationSource = .realtime,
    commit: String? = nil,
    complete: Bool = true
) -> JobObservation {
    try! JobObservation.row(
        columns, complete: complete, commitTimestamp: commit.flatMap(JobTimestamp.init), source: source)
}

func ts(_ second: Int, micros: Int = 0) -> String {
    "2026-08-21T10:15:\(second < 10 ? "0" : "")\(second).\(String(format6(micros)))+00:00"
}

private func format6(_ value: Int) -> String {
    let text = String(value)
    return String(repeating: "0", count: 6 - text.count) + text
}
