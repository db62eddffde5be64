/// Just enough XML for S3's answers, which are flat and machine-written: the text of `<Tag>…</Tag>` elements,
/// optionally inside each `<Parent>…</Parent>`, with the five predefined entities and numeric references
/// decoded. Not a general XML parser: no attributes are read, CDATA and comments are not expected (S3 sends
/// neither), and a tag nested in itself is not supported.
public enum S3XML {
    /// The text of every `<tag>` element, in document order.
    public static func values(_ tag: String, in xml: String) -> [String] {
        elements(tag, in: Substring(xml)).map { decodeEntities($0) }
    }

    public static func value(_ tag: String, in xml: String) -> String? {
        values(tag, in: xml).first
    }

    /// The inner XML of each `<tag>` element (for `Part`, `Contents`, `Upload` records).
    public static func records(_ tag: String, in xml: String) -> [String] {
        elements(tag, in: Substring(xml)).map(String.init)
    }

    private static func elements(_ tag: String, in xml: Substring) -> [Substring] {
        var found: [Substring] = []
        let open = "<" + tag
        let close = "</" + tag + ">"
        var rest = xml
        while let start = rest.firstRange(of: open) {
            let afterName = rest[start.upperBound...]
            guard let next = afterName.first else { break }
            // `<Part>` must not match `<PartNumber>`.
            guard next == ">" || next == " " || next == "/" || next == "\t" || next == "\n" else {
                rest = afterName
                continue
            }
            guard let tagEnd = afterName.firstIndex(of: ">") else { break }
            if tagEnd > afterName.startIndex, afterName[afterName.index(before: tagEnd)] == "/" {  // <Tag/>
                found.append(afterName[tagEnd..<tagEnd])
                rest = afterName[afterName.index(after: tagEnd)...]
                continue
            }
            let content = afterName[afterName.index(after: tagEnd)...]
            guard let end = content.firstRange(of: close) else { break }
            found.append(content[..<end.lowerBound])
            rest = content[end.upperBound...]
        }
        return found
    }

    public static func decodeEntities(_ text: Substring) -> String {
        guard text.contains("&") else { return String(text) }
        var output = ""
        var rest = text
        while let amp = rest.firstIndex(of: "&") {
            output += rest[..<amp]
            let after = rest[amp...]
            guard let semicolon = after.firstIndex(of: ";"), after.distance(from: amp, to: semicolon) <= 10 else {
                output += "&"
                rest = rest[rest.index(after: amp)...]
                continue
            }
            let name = after[after.index(after: amp)..<semicolon]
            var replacement: String?
            switch name {
            case "amp": replacement = "&"
            case "lt": replacement = "<"
            case "gt": replacement = ">"
            case "quot": replacement = "\""
            case "apos": replacement = "'"
            default:
                if name.hasPrefix("#x"), let code = UInt32(name.dropFirst(2), radix: 16), let scalar = Unicode.Scalar(code) {
                    replacement = String(Character(scalar))
                } else if name.hasPrefix("#"), let code = UInt32(name.dropFirst()), let scalar = Unicode.Scalar(code) {
                    replacement = String(Character(scalar))
                }
            }
            if let replacement {
                output += replacement
                rest = rest[rest.index(after: semicolon)...]
            } else {
                output += "&"
                rest = rest[rest.index(after: amp)...]
            }
        }
        output += rest
        return output
    }

    public static func escape(_ text: String) -> String {
        var output = ""
        for character in text {
            switch character {
            case "&": output += "&amp;"
            case "<": output += "&lt;"
            case ">": output += "&gt;"
            case "\"": output += "&quot;"
            case "'": output += "&apos;"
            default: output.append(character)
            }
        }
        return output
    }
}

/// One part as `ListParts` reports it.
public struct S3Part: Sendable, Equatable {
    public var number: Int
    public var etag: String
    public var size: Int64

    public init(number: Int, etag: String, size: Int64) {
        self.number = number
        self.etag = etag
        self.size = size
    }
}

/// The answers the store reads.
public enum S3Responses {
    public static func uploadID(fromInitiate xml: String) -> String? {
        S3XML.value("UploadId", in: xml)
    }

    /// Parts of one `ListParts` page, and the marker of the next page (nil when this was the last).
    public static func parts(fromListParts xml: String) -> (parts: [S3Part], nextMarker: String?) {
        let parts = S3XML.records("Part", in: xml).compactMap { record -> S3Part? in
            guard let number = S3XML.value("PartNumber", in: record).flatMap({ Int($0) }),
                let etag = S3XML.value("ETag", in: record),
                let size = S3XML.value("Size", in: record).flatMap({ Int64($0) })
            else { return nil }
            return S3Part(number: number, etag: etag, size: size)
        }
        let truncated = S3XML.value("IsTruncated", in: xml) == "true"
        return (parts, truncated ? S3XML.value("NextPartNumberMarker", in: xml) : nil)
    }

    /// Keys of one `ListObjectsV2` page and the continuation token (nil at the end).
    public static func keys(fromListObjects xml: String) -> (keys: [String], continuation: String?) {
        let keys = S3XML.records("Contents", in: xml).compactMap { S3XML.value("Key", in: $0) }
        let truncated = S3XML.value("IsTruncated", in: xml) == "true"
        return (keys, truncated ? S3XML.value("NextContinuationToken", in: xml) : nil)
    }

    /// (key, upload id) of one `ListMultipartUploads` page; the markers of the next page, if any.
    public static func uploads(fromListMultipartUploads xml: String)
        -> (uploads: [(key: String, uploadID: String)], nextKeyMarker: String?, nextUploadIDMarker: String?)
    {
        let uploads = S3XML.records("Upload", in: xml).compactMap { record -> (key: String, uploadID: String)? in
            guard let key = S3XML.value("Key", in: record), let id = S3XML.value("UploadId", in: record) else {
                return nil
            }
            return (key, id)
        }
        let truncated = S3XML.value("IsTruncated", in: xml) == "true"
        return (
            uploads, truncated ? S3XML.value("NextKeyMarker", in: xml) : nil,
            truncated ? S3XML.value("NextUploadIdMarker", in: xml) : nil
        )
    }

    /// `<Error><Code>…</Code><Message>…</Message></Error>`.
    public static func error(from xml: String) -> (code: String, message: String)? {
        guard let code = S3XML.value("Code", in: xml) else { return nil }
        return (code, S3XML.value("Message", in: xml) ?? "")
    }

    public static func completeBody(_ parts: [S3Part]) -> String {
        var body = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for part in parts {
            body += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(S3XML.escape(part.etag))</ETag></Part>"
        }
        return body + "</CompleteMultipartUpload>"
    }
}
