//! An OS error as nginx writes it in its logs: `(111: Connection refused)`, the number first.
//! Imports only std.

use std::io;

/// `111: Connection refused` for an OS error; None for errors that carry no errno.
pub fn os_error(error: &io::Error) -> Option<String> {
    let code = error.raw_os_error()?;
    let text = io::Error::from_raw_os_error(code).to_string();
    // std writes "Connection refused (os error 111)".
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    Some(format!("{code}: {text}"))
}

/// The error as nginx would write it: `111: Connection refused`, or the message itself.
pub fn described(error: &io::Error) -> String {
    os_error(error).unwrap_or_else(|| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_first_as_nginx() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(os_error(&refused).unwrap(), "111: Connection refused");
        assert_eq!(described(&io::Error::other("no luck")), "no luck");
    }
}
