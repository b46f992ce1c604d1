//! An upgraded connection (websocket): after the gateway's `101`, bytes are copied both
//! ways until either side closes, then both close. A client that only half-closes (its
//! FIN after its last frame) still gets what the gateway sends back: the FIN is passed
//! on, and the copy goes on until the gateway closes too.
//!
//! No byte can be lost at the switch: the request's body reader is never started
//! before the `101` is written, so whatever the client sent after its head (frames sent
//! eagerly) is read as upgraded bytes, and so is whatever the gateway sent after its
//! `101` in the same packet. (pingora-proxy 0.9.1 read the empty request body first and
//! raced its body pipe against the first frame: sessions reset right after the `101`.)

use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::v1::server::HttpSession;

/// Copies until either side closes or fails; the session's own idle limits are off (a
/// realtime session may be quiet for long), the gateway's read timeout still holds.
pub(super) async fn tunnel(down: &mut HttpSession, up: &mut Upstream) {
    up.maybe_upgrade_body_writer();
    down.set_read_timeout(None);
    let mut client_sending = true;
    loop {
        tokio::select! {
            from_client = down.read_body_bytes(), if client_sending => match from_client {
                Ok(Some(bytes)) => {
                    if up.write_body(&bytes).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {
                    client_sending = false;
                    up.shutdown().await;
                }
                Err(_) => break,
            },
            from_gateway = up.read_body_ref() => match from_gateway {
                Ok(Some(bytes)) => {
                    if down.write_body(bytes).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
        }
    }
    up.shutdown().await;
}
