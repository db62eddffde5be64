import XCTest

final class TusClientTestsPlaceholder: XCTestCase {}
