import TusS3Store
import XCTest

/// The S3 answers the store reads, as AWS documents them (and Ceph RGW sends them).
final class S3XMLTests: XCTestCase {
    func testInitiateMultipartUpload() {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Bucket>example-bucket</Bucket><Key>example-object</Key>
              <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
            </InitiateMultipartUploadResult>
            """
        XCTAssertEqual(
            S3Responses.uploadID(fromInitiate: xml), "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA")
    }

    func testListPartsPagesAndEntities() {
        let xml = """
            <ListPartsResult><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId>
            <PartNumberMarker>1</PartNumberMarker><NextPartNumberMarker>3</NextPartNumberMarker>
            <MaxParts>2</MaxParts><IsTruncated>true</IsTruncated>
            <Part><PartNumber>2</PartNumber><LastModified>2010-11-10T20:48:34.000Z</LastModified>
            <ETag>&quot;7778aef83f66abc1fa1e8477f296d394&quot;</ETag><Size>10485760</Size></Part>
            <Part><PartNumber>3</PartNumber><ETag>"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"</ETag><Size>5</Size></Part>
            </ListPartsResult>
            """
        let page = S3Responses.parts(fromListParts: xml)
        XCTAssertEqual(
            page.parts,
            [
                S3Part(number: 2, etag: "\"7778aef83f66abc1fa1e8477f296d394\"", size: 10_485_760),
                S3Part(number: 3, etag: "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", size: 5),
            ])
        XCTAssertEqual(page.nextMarker, "3")
        XCTAssertNil(S3Responses.parts(fromListParts: "<ListPartsResult><IsTruncated>false</IsTruncated></ListPartsResult>").nextMarker)
    }

    func testListObjectsAndUploadsAndErrors() {
        let objects = """
            <ListBucketResult><Name>b</Name><Prefix>p</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>
            <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
            <Contents><Key>pabc.part.1</Key><Size>3</Size></Contents><Contents><Key>a&amp;b</Key></Contents>
            </ListBucketResult>
            """
        let page = S3Responses.keys(fromListObjects: objects)
        XCTAssertEqual(page.keys, ["pabc.part.1", "a&b"])
        XCTAssertEqual(page.continuation, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")

        let uploads = """
            <ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>
            <Upload><Key>pabc</Key><UploadId>2~xyz</UploadId><Initiator><ID>x</ID></Initiator></Upload>
            <Upload><Key>pabcd</Key><UploadId>2~other</UploadId></Upload></ListMultipartUploadsResult>
            """
        let listed = S3Responses.uploads(fromListMultipartUploads: uploads)
        XCTAssertEqual(listed.uploads.map(\.key), ["pabc", "pabcd"])
        XCTAssertEqual(listed.uploads.map(\.uploadID), ["2~xyz", "2~other"])
        XCTAssertNil(listed.nextKeyMarker)

        let error = "<?xml version=\"1.0\"?><Error><Code>NoSuchUpload</Code><Message>The upload &lt;x&gt; does not exist</Message></Error>"
        XCTAssertEqual(S3Responses.error(from: error)?.code, "NoSuchUpload")
        XCTAssertEqual(S3Responses.error(from: error)?.message, "The upload <x> does not exist")
        XCTAssertNil(S3Responses.error(from: "not xml"))
    }

    func testSelfClosingAndPrefixTags() {
        // <Part> must not match <PartNumber>; an empty element reads as "".
        XCTAssertEqual(S3XML.values("Part", in: "<PartNumber>1</PartNumber><Part>x</Part>"), ["x"])
        XCTAssertEqual(S3XML.values("Prefix", in: "<Prefix/><Key>k</Key>"), [""])
        XCTAssertEqual(S3XML.decodeEntities("&#65;&#x42;&unknown;&"), "AB&unknown;&")
    }

    func testCompleteBodyEscapes() {
        XCTAssertEqual(
            S3Responses.completeBody([S3Part(number: 1, etag: "\"e\"", size: 1)]),
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Part><PartNumber>1</PartNumber><ETag>&quot;e&quot;</ETag></Part></CompleteMultipartUpload>")
    }
}
