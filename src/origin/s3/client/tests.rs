//! Unit tests of the pure parts of the S3 client (errno mapping, part
//! planning, header encoding).

use super::*;

#[test]
fn errno_mapping() {
    assert_eq!(errno_for(404, Some("NoSuchKey")), Errno::ENOENT);
    assert_eq!(errno_for(404, None), Errno::ENOENT);
    assert_eq!(errno_for(404, Some("NoSuchBucket")), Errno::EIO);
    assert_eq!(errno_for(403, Some("AccessDenied")), Errno::EACCES);
    assert_eq!(errno_for(403, None), Errno::EACCES);
    assert_eq!(errno_for(412, Some("PreconditionFailed")), Errno::ESTALE);
    assert_eq!(errno_for(412, None), Errno::ESTALE);
    assert_eq!(
        errno_for(409, Some("ConditionalRequestConflict")),
        Errno::ESTALE
    );
    assert_eq!(
        Cond::Absent.errno(Errno::ESTALE.into()).errno(),
        Errno::EEXIST
    );
    assert_eq!(
        Cond::Match("\"e\"").errno(Errno::ESTALE.into()).errno(),
        Errno::ESTALE
    );
    assert_eq!(Cond::Absent.errno(Errno::EIO.into()).errno(), Errno::EIO);
    assert_eq!(errno_for(400, Some("RequestTimeout")), Errno::ETIMEDOUT);
    assert_eq!(errno_for(504, None), Errno::ETIMEDOUT);
    assert_eq!(errno_for(500, Some("InternalError")), Errno::EIO);
    assert_eq!(errno_for(503, Some("SlowDown")), Errno::EIO);
    assert_eq!(errno_for(200, None), Errno::EIO);
}

#[test]
fn multipart_part_sizing() {
    assert_eq!(part_size(20 * MIB, MIN_UPLOAD_PART), 8 * MIB);
    assert_eq!(part_size(0, MIN_UPLOAD_PART), 8 * MIB);
    // 10,000 parts of 8 MiB: exactly the limit.
    assert_eq!(part_size(10_000 * 8 * MIB, MIN_UPLOAD_PART), 8 * MIB);
    // One byte more needs 9 MiB parts.
    assert_eq!(part_size(10_000 * 8 * MIB + 1, MIN_UPLOAD_PART), 9 * MIB);
    // 5 TiB, S3's largest object.
    let five_tib = 5 * 1024 * 1024 * MIB;
    let p = part_size(five_tib, MIN_UPLOAD_PART);
    assert!(five_tib.div_ceil(p) <= MAX_PARTS);
    assert_eq!(p % MIB, 0);
    assert!(p <= 5 * 1024 * MIB, "S3's largest part is 5 GiB");
    assert_eq!(part_size(6 * 1024 * MIB, MIN_COPY_PART), 512 * MIB);
}

#[test]
fn part_planning() {
    assert!(plan_parts(0, 8).is_empty());
    assert_eq!(plan_parts(8, 8), vec![0..8]);
    assert_eq!(plan_parts(20, 8), vec![0..8, 8..16, 16..20]);
    let parts = plan_parts(20 * MIB + 3, 8 * MIB);
    assert_eq!(parts.len(), 3);
    assert_eq!(parts.last().map(|r| r.end), Some(20 * MIB + 3));
    assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
}

#[test]
fn copy_source_encoding() {
    assert_eq!(copy_source("b", "a/b.txt"), "b/a/b.txt");
    assert_eq!(copy_source("b", "a b/ü+%?"), "b/a%20b/%C3%BC%2B%25%3F");
}

#[test]
fn content_range() {
    assert_eq!(
        parse_content_range("bytes 0-9/100"),
        Some((0, 10, Some(100)))
    );
    assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 6, None)));
    assert_eq!(parse_content_range("bytes 9-5/100"), None);
    assert_eq!(parse_content_range("items 0-9/100"), None);
    assert_eq!(parse_content_range("bytes x-9/100"), None);
}
