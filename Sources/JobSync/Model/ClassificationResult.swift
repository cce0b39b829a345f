public import JobSyncCore

/// A job's `result`: the raw JSON, always kept, and a typed view when the JSON has the expected shape.
///
/// An unreadable result (wrong types, a string that is not JSON) is delivered with ``view`` `nil`.
public struct ClassificationResult: Hashable, Sendable {
    /// The result exactly as stored (a JSON string holding JSON is kept as the string).
    public var raw: JSONValue
    /// The typed view, or `nil` when ``raw`` does not have the expected shape.
    public var view: View?

    /// The typed view of a classification result.
    public struct View: Hashable, Sendable {
        /// The overall classification.
        public var classification: String?
        /// The overall confidence, 0–1.
        public var confidence: Double?
        /// The number of pages in the document.
        public var totalPages: Int?
        /// The number of pages processed.
        public var processedPages: Int?
        /// Per-page results.
        public var pageResults: [PageResult]

        /// The page numbers whose processing failed (`success == false`), in order.
        public var failedPages: [Int] {
            self.pageResults.filter { !$0.success }.map(\.page)
        }
    }

    /// One page's result.
    public struct PageResult: Hashable, Sendable {
        /// The page number (1-based as the service reports it).
        public var page: Int
        /// Whether the page was processed successfully.
        public var success: Bool
        /// The page's classification.
        public var classification: String?
        /// The page's confidence, 0–1.
        public var confidence: Double?
        /// The page's error, when it failed.
        public var error: String?
    }

    /// Builds the result and, when possible, its view. A JSON string that contains JSON is parsed for the view.
    public init(raw: JSONValue) {
        self.raw = raw
        var source = raw
        if case .string(let text) = raw, let parsed = try? JSONValue.parse(text) { source = parsed }
        self.view = source.objectValue.flatMap(Self.makeView)
    }

    private static func makeView(_ object: JSONObject) -> View? {
        func optionalString(_ key: String, in object: JSONObject) -> String?? {
            switch object[key] {
            case nil, .null?: return .some(nil)
            case .string(let value)?: return .some(value)
            default: return nil  // present with the wrong type: unreadable
            }
        }
        func optionalDouble(_ key: String, in object: JSONObject) -> Double?? {
            switch object[key] {
            case nil, .null?: return .some(nil)
            case .number(let number)?: return number.double.map { .some($0) }
            default: return nil
            }
        }
        func optionalInt(_ key: String, in object: JSONObject) -> Int?? {
            switch object[key] {
            case nil, .null?: return .some(nil)
            case .number(let number)?:
                let value = Int(number.text) ?? number.double.flatMap { Int(exactly: $0) }
                return value.map { .some($0) }
            default: return nil
            }
        }
        guard let classification = optionalString("classification", in: object),
            let confidence = optionalDouble("confidence", in: object),
            let totalPages = optionalInt("total_pages", in: object),
            let processedPages = optionalInt("processed_pages", in: object)
        else { return nil }
        var pages: [PageResult] = []
        switch object["page_results"] {
        case nil, .null?: break
        case .array(let items)?:
            for item in items {
                guard let page = item.objectValue, let number = optionalInt("page", in: page), let number,
                    let pageClassification = optionalString("classification", in: page),
                    let pageConfidence = optionalDouble("confidence", in: page),
                    let pageError = optionalString("error", in: page)
                else { return nil }
                let success: Bool
                switch page["success"] {
                case .bool(let value)?: success = value
                case nil, .null?: success = pageError == nil
                default: return nil
                }
                pages.append(
                    PageResult(
                        page: number, success: success, classification: pageClassification,
                        confidence: pageConfidence, error: pageError))
            }
        default: return nil
        }
        return View(
            classification: classification, confidence: confidence, totalPages: totalPages,
            processedPages: processedPages, pageResults: pages)
    }
}
