// Heap allocations of a child process, counted by ordo-one's malloc-interposer (the allocation counter behind
// ordo-one/benchmark's `mallocCount` metrics). The harness starts the child with `LD_PRELOAD` naming the
// interposer's library; the child finds the counter's C entry points with `dlsym`, so nothing is linked into the
// harness (whose memory figures must not carry the interposer's 16-byte header per allocation).
import Foundation

enum MallocCounter {
    /// `libMallocInterposerSwift.so` next to this executable (scripts/bench.sh builds it), if present.
    static var preload: String? {
        let directory = URL(fileURLWithPath: ThroughputBenchmark.selfExecutable).deletingLastPathComponent()
        let path = directory.appendingPathComponent("libMallocInterposerSwift.so").path
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    private typealias Toggle = @convention(c) () -> Void
    private typealias Statistics = @convention(c) (
        UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int64>?,
        UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int64>?
    ) -> Void

    private static func symbol<T>(_ name: String, as type: T.Type) -> T? {
        guard let handle = dlopen(nil, RTLD_NOW), let pointer = dlsym(handle, name) else { return nil }
        return unsafeBitCast(pointer, to: type)
    }

    /// Resets the counters and starts counting (no-op without the interposer).
    static func start() {
        self.symbol("malloc_interposer_reset", as: Toggle.self)?()
        self.symbol("malloc_interposer_enable", as: Toggle.self)?()
    }

    /// Stops counting and returns the allocations since ``start()``, or nil without the interposer.
    static func stop() -> Int? {
        guard let disable = self.symbol("malloc_interposer_disable", as: Toggle.self),
            let statistics = self.symbol("malloc_interposer_get_stats", as: Statistics.self)
        else { return nil }
        disable()
        var values = [Int64](repeating: 0, count: 6)
        values.withUnsafeMutableBufferPointer { v in
            statistics(v.baseAddress, v.baseAddress! + 1, v.baseAddress! + 2, v.baseAddress! + 3, v.baseAddress! + 4,
                v.baseAddress! + 5)
        }
        return Int(values[0])
    }
}
