//! Reading the QR code in a photo or screenshot (PNG or JPEG) for
//! `atm scan --image FILE`.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};

/// Pixels larger than this (width × height) are refused: a decompression
/// bomb would otherwise take the memory.
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

struct Grey {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

fn check_size(width: u64, height: u64, path: &Path) -> Result<()> {
    if width == 0 || height == 0 || width.saturating_mul(height) > MAX_PIXELS {
        bail!(
            "{}: {width}x{height} pixels is empty or larger than {MAX_PIXELS} pixels",
            path.display()
        );
    }
    Ok(())
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000) as u8
}

fn decode_png(bytes: &[u8], path: &Path) -> Result<Grey> {
    let mut decoder = png::Decoder::new(bytes);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| anyhow!("{}: not a readable PNG: {e}", path.display()))?;
    let (w, h) = (reader.info().width, reader.info().height);
    check_size(u64::from(w), u64::from(h), path)?;
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buffer)
        .map_err(|e| anyhow!("{}: not a readable PNG: {e}", path.display()))?;
    let channels = frame.color_type.samples();
    let data = &buffer[..frame.buffer_size()];
    let (width, height) = (frame.width as usize, frame.height as usize);
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = &data[y * frame.line_size..(y + 1) * frame.line_size];
        for x in 0..width {
            let p = &row[x * channels..(x + 1) * channels];
            let v = match channels {
                1 => p[0],
                // Grey + alpha: transparent counts as white.
                2 => 255 - (((255 - u32::from(p[0])) * u32::from(p[1])) / 255) as u8,
                3 => luma(p[0], p[1], p[2]),
                _ => {
                    let l = luma(p[0], p[1], p[2]);
                    255 - (((255 - u32::from(l)) * u32::from(p[3])) / 255) as u8
                }
            };
            pixels.push(v);
        }
    }
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<Grey> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder
        .read_info()
        .map_err(|e| anyhow!("{}: not a readable JPEG: {e}", path.display()))?;
    let info = decoder
        .info()
        .ok_or_else(|| anyhow!("{}: JPEG without a header", path.display()))?;
    check_size(u64::from(info.width), u64::from(info.height), path)?;
    let data = decoder
        .decode()
        .map_err(|e| anyhow!("{}: not a readable JPEG: {e}", path.display()))?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    let pixels = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => data,
        jpeg_decoder::PixelFormat::L16 => data.chunks(2).map(|c| c[0]).collect(),
        jpeg_decoder::PixelFormat::RGB24 => {
            data.chunks(3).map(|c| luma(c[0], c[1], c[2])).collect()
        }
        jpeg_decoder::PixelFormat::CMYK32 => data
            .chunks(4)
            .map(|c| {
                let k = u32::from(255 - c[3]);
                let f = |v: u8| ((u32::from(255 - v) * k) / 255) as u8;
                luma(f(c[0]), f(c[1]), f(c[2]))
            })
            .collect(),
    };
    if pixels.len() < width * height {
        bail!("{}: the JPEG's pixels are incomplete", path.display());
    }
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

/// The text of the (first readable) QR code in the image at `path`.
pub fn read_qr(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let grey = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(&bytes, path)?
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(&bytes, path)?
    } else {
        bail!("{}: neither a PNG nor a JPEG image", path.display());
    };
    let Grey {
        width,
        height,
        pixels,
    } = grey;
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    let grids = prepared.detect_grids();
    if grids.is_empty() {
        bail!("{}: no QR code found in the image", path.display());
    }
    let mut last = None;
    for grid in grids {
        match grid.decode() {
            Ok((_, text)) => return Ok(text),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow!(
        "{}: a QR code was found but could not be read ({})",
        path.display(),
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const URI: &str = "xmpp:alice@example.org?trust-message;encryption=urn:xmpp:omemo:2;trust=0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    /// A "photo": the QR code drawn small in a bigger grey frame, slightly
    /// noisy, as JPEG.
    #[test]
    fn reads_a_qr_code_from_a_noisy_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("qr.png");
        std::fs::write(&png, atm_tm::qr::to_png(URI, 4).unwrap()).unwrap();
        let qr = decode_png(&std::fs::read(&png).unwrap(), &png).unwrap();
        let (w, h) = (qr.width + 120, qr.height + 80);
        let mut pixels = vec![0u8; w * h];
        let mut noise = 12345u32;
        for y in 0..h {
            for x in 0..w {
                noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let jitter = ((noise >> 16) % 24) as u8;
                let inside = x >= 60 && y >= 40 && x < 60 + qr.width && y < 40 + qr.height;
                let base = if inside {
                    qr.pixels[(y - 40) * qr.width + (x - 60)]
                } else {
                    180
                };
                pixels[y * w + x] = if base > 127 {
                    base - jitter
                } else {
                    base + jitter
                };
            }
        }
        let jpeg = dir.path().join("photo.jpg");
        jpeg_encoder::Encoder::new_file(&jpeg, 80)
            .unwrap()
            .encode(&pixels, w as u16, h as u16, jpeg_encoder::ColorType::Luma)
            .unwrap();
        assert_eq!(read_qr(&jpeg).unwrap(), URI);
        assert_eq!(read_qr(&png).unwrap(), URI);
    }

    #[test]
    fn refuses_what_is_not_an_image_or_holds_no_code() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("t.png");
        std::fs::write(&text, b"hello").unwrap();
        assert!(read_qr(&text).unwrap_err().to_string().contains("neither"));
        let broken = dir.path().join("b.png");
        std::fs::write(&broken, b"\x89PNG\r\n\x1a\n\0\0garbage").unwrap();
        assert!(read_qr(&broken).unwrap_err().to_string().contains("PNG"));
        let broken = dir.path().join("b.jpg");
        std::fs::write(&broken, [0xFF, 0xD8, 0xFF, 0, 1, 2]).unwrap();
        assert!(read_qr(&broken).unwrap_err().to_string().contains("JPEG"));
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A header that claims 100,000 × 100,000 pixels is refused before any
    /// memory is taken for them.
    #[test]
    fn refuses_a_decompression_bomb() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&100_000u32.to_be_bytes());
        chunk.extend_from_slice(&100_000u32.to_be_bytes());
        chunk.extend_from_slice(&[8, 0, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
        let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01".to_vec();
        png.extend_from_slice(&8u32.to_be_bytes());
        png.extend_from_slice(&idat);
        png.extend_from_slice(&crc32(&idat).to_be_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.png");
        std::fs::write(&path, png).unwrap();
        let error = read_qr(&path).unwrap_err().to_string();
        assert!(error.contains("larger than"), "{error}");
    }
}
