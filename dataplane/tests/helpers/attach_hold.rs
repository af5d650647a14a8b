//! Test helper: attaches the classifier to the interface named by the first argument, prints
//! `attached`, and waits to be killed. Used to prove that a crashed loader detaches.
use std::io::Write as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iface = std::env::args().nth(1).ok_or("usage: attach_hold IFACE")?;
    let mut classifier = ioth_dataplane::Classifier::load(Default::default())?;
    classifier.attach(&iface, ioth_dataplane::ModeRequest::Auto)?;
    let mut out = std::io::stdout().lock();
    out.write_all(b"attached\n")?;
    out.flush()?;
    loop {
        std::thread::park();
    }
}
