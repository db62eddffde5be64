/// A Prometheus histogram's state: counts per upper bound (not cumulative until rendered), sum and count.
/// A value type owned by one loop; loops' histograms are added up when scraped.
struct Histogram: Sendable {
    /// Seconds. From 100 µs (a HEAD answered from memory) to 60 s (a PATCH of a large chunk on a slow link).
    static let bounds: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    private(set) var counts = [UInt64](repeating: 0, count: Histogram.bounds.count + 1)
    private(set) var sum: Double = 0
    private(set) var count: UInt64 = 0

    mutating func observe(seconds: Double) {
        // 18 bounds: a linear scan is as fast as a binary search and simpler.
        var index = 0
        while index < Self.bounds.count, seconds > Self.bounds[index] { index += 1 }
        counts[index] += 1
        sum += seconds
        count += 1
    }

    mutating func add(_ other: Histogram) {
        for index in counts.indices { counts[index] += other.counts[index] }
        sum += other.sum
        count += other.count
    }

    /// Cumulative counts per bound, then +Inf, as the exposition format wants them.
    var cumulative: [(bound: String, count: UInt64)] {
        var running: UInt64 = 0
        var result: [(String, UInt64)] = []
        for (index, bound) in Self.bounds.enumerated() {
            running += counts[index]
            result.append((PrometheusText.number(bound), running))
        }
        result.append(("+Inf", count))
        return result
    }
}
