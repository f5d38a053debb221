//! QR codes of Trust Message URIs (or any text): terminal, SVG and PNG.

use qrcode::render::{svg, unicode};
use qrcode::{EcLevel, QrCode};

/// Why a QR code could not be made.
#[derive(Debug, thiserror::Error)]
pub enum QrError {
    /// The text does not fit in a QR code.
    #[error("cannot encode as QR code: {0}")]
    Encode(#[from] qrcode::types::QrError),
    /// Writing the PNG failed.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

fn code(text: &str) -> Result<QrCode, QrError> {
    Ok(QrCode::with_error_correction_level(
        text.as_bytes(),
        EcLevel::M,
    )?)
}

/// Renders `text` with Unicode half blocks, two modules per character
/// vertically, dark on light, with the quiet zone.
pub fn to_terminal(text: &str) -> Result<String, QrError> {
    Ok(code(text)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// An SVG document of the code.
pub fn to_svg(text: &str) -> Result<String, QrError> {
    Ok(code(text)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

/// A grayscale PNG of the code, `scale` pixels per module (at least 1),
/// with a 4-module quiet zone.
pub fn to_png(text: &str, scale: u32) -> Result<Vec<u8>, QrError> {
    let code = code(text)?;
    let width = code.width();
    let colors = code.to_colors();
    let scale = scale.max(1) as usize;
    let quiet = 4usize;
    let side = (width + 2 * quiet) * scale;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = (i % width + quiet, i / width + quiet);
            for dy in 0..scale {
                let row = (y * scale + dy) * side;
                for dx in 0..scale {
                    if let Some(p) = pixels.get_mut(row + x * scale + dx) {
                        *p = 0;
                    }
                }
            }
        }
    }
    let side32 = u32::try_from(side).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side32, side32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&pixels)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "xmpp:bob@example.com?trust-message;encryption=urn:xmpp:omemo:2;trust=623548d3835c6d33ef5cb680f7944ef381cf712bf23a0119dabe5c4f252cd02f";

    #[test]
    fn renders() {
        let t = to_terminal(URI).unwrap();
        assert!(t.lines().count() > 10);
        assert!(t.contains('█') || t.contains('▀') || t.contains('▄'));
        let s = to_svg(URI).unwrap();
        assert!(s.contains("<svg"));
        let p = to_png(URI, 4).unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn too_long_is_an_error() {
        assert!(to_terminal(&"x".repeat(10_000)).is_err());
    }
}
