import JobSync

extension JobID {
    /// Parses the job ids given on the command line (UUIDs, any letter case), failing on the first invalid one with a
    /// message that shows it (shortened). Watching the same job twice is harmless: the first occurrence is kept.
    static func parseAll(_ texts: [String]) throws(JobwatchError) -> [JobID] {
        var ids: [JobID] = []
        var seen: Set<JobID> = []
        for text in texts {
            guard let id = try? JobID(text) else {
                throw JobwatchError(
                    .invalidInput,
                    "'\(Redact.shorten(text))' is not a job id: expected a UUID such as "
                        + "123e4567-e89b-12d3-a456-426614174000"
                )
            }
            if seen.insert(id).inserted {
                ids.append(id)
            }
        }
        return ids
    }
}
