// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "JobSync",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "JobSyncCore", targets: ["JobSyncCore"]),
        .library(name: "RealtimeProtocol", targets: ["RealtimeProtocol"]),
        .library(name: "WebSocketTransport", targets: ["WebSocketTransport"]),
        .library(name: "SupabaseRealtime", targets: ["SupabaseRealtime"]),
        .library(name: "SupabaseREST", targets: ["SupabaseREST"]),
        .library(name: "JobSync", targets: ["JobSync"]),
        .library(name: "SupabaseLocal", targets: ["SupabaseLocal"]),
        .executable(name: "jobwatch", targets: ["jobwatch"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-async-algorithms", from: "1.1.4"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // Benchmarks only: micro-benchmarks with allocation counts, latency percentiles.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // MARK: Shared leaf (no dependencies): redaction, the one JSON value
        .target(name: "JobSyncCore", swiftSettings: strict),

        // MARK: Protocol core (no I/O)
        .target(name: "RealtimeProtocol", dependencies: ["JobSyncCore"], swiftSettings: strict),

        // MARK: WebSocket transport
        .systemLibrary(
            name: "CLibWebSockets",
            pkgConfig: "libwebsockets",
            providers: [.apt(["libwebsockets-dev"])]
        ),
        .target(
            name: "WebSocketTransport",
            dependencies: [
                "JobSyncCore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "CLibWebSockets",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // MARK: Realtime client
        .target(
            name: "SupabaseRealtime",
            dependencies: [
                "JobSyncCore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "RealtimeProtocol",
                "WebSocketTransport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // MARK: PostgREST client
        .target(
            name: "SupabaseREST",
            dependencies: [
                "JobSyncCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // MARK: The product
        .target(
            name: "JobSync",
            dependencies: [
                "JobSyncCore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "RealtimeProtocol",
                "SupabaseRealtime",
                "SupabaseREST",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                "WebSocketTransport",
            ],
            swiftSettings: strict
        ),

        // MARK: Local Supabase stand-in (must not import RealtimeProtocol)
        .target(
            name: "SupabaseLocal",
            dependencies: [
                "JobSyncCore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // MARK: CLI
        .executableTarget(
            name: "jobwatch",
            dependencies: [
                "JobSyncCore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "JobSync",
                "SupabaseLocal",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "SupabaseREST",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // MARK: Benchmarks
        .executableTarget(
            name: "DecodeBenchmark",
            dependencies: ["RealtimeProtocol", "JobSyncCore"],
            path: "Benchmarks/DecodeBenchmark",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "JobSyncBenchmarks",
            dependencies: [
                "JobSync", "JobSyncCore", "RealtimeProtocol", "SupabaseLocal", "SupabaseRealtime", "WebSocketTransport",
                "SupabaseREST", .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks/JobSyncBenchmarks",
            exclude: ["RESULTS.md"],
            swiftSettings: strict
        ),
        // MARK: Micro-benchmarks of the pipeline's stages (`swift package benchmark --target PipelineBenchmarks`)
        .executableTarget(
            name: "PipelineBenchmarks",
            dependencies: [
                "JobSync", "JobSyncCore", "RealtimeProtocol", .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/PipelineBenchmarks",
            swiftSettings: strict,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // MARK: Local stack executable (conformance script, manual runs)
        .executableTarget(
            name: "supabase-local",
            dependencies: ["SupabaseLocal"],
            path: "Sources/supabase-local",
            swiftSettings: strict
        ),

        // MARK: Samples (compiled in CI, run against SupabaseLocal by JobwatchTests)
        .executableTarget(
            name: "JobReactor",
            dependencies: [
                "JobSync",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Samples/JobReactor",
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ClassificationPipeline",
            dependencies: ["JobSync"],
            path: "Samples/ClassificationPipeline",
            swiftSettings: strict
        ),

        // MARK: Tests
        .testTarget(
            name: "RealtimeProtocolTests", dependencies: ["JobSyncCore", "RealtimeProtocol"], swiftSettings: strict),
        .testTarget(
            name: "WebSocketTransportTests",
            dependencies: [
                "WebSocketTransport",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SupabaseRealtimeTests",
            dependencies: [
                "JobSyncCore",
                "JobSyncTestSupport",
                "RealtimeProtocol",
                "SupabaseRealtime",
                "SupabaseLocal",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                "WebSocketTransport",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SupabaseRESTTests",
            dependencies: [
                "JobSyncCore",
                "SupabaseREST",
                "SupabaseLocal",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SupabaseLocalTests",
            dependencies: [
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "SupabaseLocal",
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "WSCore", package: "swift-websocket"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "JobSyncCoreTests", dependencies: ["JobSyncCore"], swiftSettings: strict),
        .target(
            name: "JobSyncTestSupport",
            dependencies: [.product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            path: "Tests/JobSyncTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "JobSyncTests",
            dependencies: [
                "JobSyncTestSupport",
                "JobSync",
                "JobSyncCore",
                "RealtimeProtocol",
                "SupabaseLocal",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                "SupabaseREST",
                "SupabaseRealtime",
                "WebSocketTransport",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "JobwatchTests",
            dependencies: [
                "JobSyncTestSupport",
                "JobSync", "jobwatch", "JobSyncCore", "SupabaseLocal", "SupabaseREST",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
    ]
)
