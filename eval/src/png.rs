//! A minimal PNG writer for the charts: 8-bit RGB, one zlib-compressed IDAT, no filters
//! (chart images are mostly flat colour, which deflate handles well without them).

use std::io::Write;

/// Encodes `rgb` (`width × height × 3` bytes, row-major) as a PNG file.
pub fn encode_rgb(rgb: &[u8], width: u32, height: u32) -> std::io::Result<Vec<u8>> {
    let row = width as usize * 3;
    if rgb.len() != row * height as usize {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} bytes for a {width}×{height} RGB image", rgb.len()),
        ));
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    for line in rgb.chunks(row.max(1)) {
        z.write_all(&[0])?; // filter type None
        z.write_all(line)?;
    }
    let idat = z.finish()?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, colour type RGB, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut h = crc32fast::Hasher::new();
    h.update(kind);
    h.update(data);
    out.extend_from_slice(&h.finalize().to_be_bytes());
}

/// Width and height from a PNG's IHDR (None when `bytes` is not a PNG); for the chart tests.
#[cfg(test)]
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Some((be(16), be(20)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn chunks_carry_crcs_and_the_pixels_round_trip() {
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| i as u8 * 10).collect();
        let png = encode_rgb(&rgb, 2, 3).unwrap();
        assert_eq!(dimensions(&png), Some((2, 3)));
        // IHDR's CRC (bytes 29..33) covers its type and data
        let mut h = crc32fast::Hasher::new();
        h.update(&png[12..29]);
        assert_eq!(png[29..33], h.finalize().to_be_bytes());
        let idat_len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&png[41..41 + idat_len]).read_to_end(&mut raw).unwrap();
        assert_eq!(raw.len(), 3 * (1 + 6));
        assert_eq!(&raw[1..7], &rgb[..6]);
        assert!(png.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
        assert!(encode_rgb(&rgb, 3, 3).is_err());
    }
}
