use super::*;

fn req(input: &[u8]) -> Result<Option<Request>, Error> {
    parse_request(input, &Limits::default())
}

fn keys<'a>(input: &'a [u8], r: &Request) -> Vec<&'a [u8]> {
    r.keys.iter().map(|k| &input[k.clone()]).collect()
}

#[test]
fn retrieval_with_many_keys() {
    let input = b"get a bb  ccc\r\nrest";
    let r = req(input).unwrap().unwrap();
    assert_eq!(r.command, Command::Get);
    assert_eq!(keys(input, &r), vec![&b"a"[..], b"bb", b"ccc"]);
    assert_eq!(r.len, 15);
    assert_eq!(r.response_kind(), ResponseKind::Retrieval);
    assert!(!r.noreply);
}

#[test]
fn storage_waits_for_its_data_block() {
    assert_eq!(req(b"set k 0 0 5\r\nhel").unwrap(), None);
    let input = b"set k 1 60 5 noreply\r\nhello\r\n";
    let r = req(input).unwrap().unwrap();
    assert_eq!(
        (r.command, r.noreply, r.len),
        (Command::Set, true, input.len())
    );
    assert_eq!(r.line_len, 22);
    assert_eq!(
        req(b"set k 0 0 5\r\nhelloXX").unwrap_err(),
        Error::BadDataChunk
    );
    let cas = b"cas k 0 0 1 42\r\nx\r\n";
    assert_eq!(req(cas).unwrap().unwrap().len, cas.len());
    assert_eq!(req(b"cas k 0 0 1\r\nx\r\n").unwrap_err(), Error::BadFormat);
}

#[test]
fn other_commands() {
    for (input, command, noreply) in [
        (&b"delete k\r\n"[..], Command::Delete, false),
        (b"delete k 0 noreply\r\n", Command::Delete, true),
        (b"incr k 5\r\n", Command::Incr, false),
        (b"decr k 5 noreply\r\n", Command::Decr, true),
        (b"touch k 10\r\n", Command::Touch, false),
        (b"version\r\n", Command::Version, false),
        (b"quit\r\n", Command::Quit, false),
    ] {
        let r = req(input).unwrap().unwrap();
        assert_eq!(
            (r.command, r.noreply, r.len),
            (command, noreply, input.len())
        );
    }
    assert_eq!(req(b"delete k 5\r\n").unwrap_err(), Error::BadFormat);
    assert_eq!(req(b"incr k x\r\n").unwrap_err(), Error::BadFormat);
    assert_eq!(req(b"stats\r\n").unwrap_err(), Error::UnknownCommand);
    assert_eq!(req(b"\r\n").unwrap_err(), Error::UnknownCommand);
}

#[test]
fn limits_are_enforced_before_waiting() {
    let limits = Limits {
        max_line_len: 16,
        max_value_len: 10,
        max_key_len: 4,
    };
    assert_eq!(
        parse_request(b"get aaaaaaaaaaaaaaaaaaaaaaaa", &limits).unwrap_err(),
        Error::LineTooLong(16)
    );
    assert!(matches!(
        parse_request(b"set k 0 0 2147483648\r\n", &Limits::default()).unwrap_err(),
        Error::ValueTooLarge { .. }
    ));
    assert_eq!(
        parse_request(b"get abcde\r\n", &limits).unwrap_err(),
        Error::KeyTooLong(4)
    );
    assert_eq!(req(b"set k 0 0 -1\r\n").unwrap_err(), Error::BadFormat);
}

#[test]
fn responses() {
    let l = Limits::default();
    assert_eq!(
        response_len(b"STORED\r\nX", ResponseKind::Line, &l).unwrap(),
        Some(8)
    );
    assert_eq!(response_len(b"STOR", ResponseKind::Line, &l).unwrap(), None);
    let two = b"VALUE a 0 1\r\nx\r\nVALUE b 5 2 99\r\nyz\r\nEND\r\n";
    assert_eq!(
        response_len(two, ResponseKind::Retrieval, &l).unwrap(),
        Some(two.len())
    );
    assert_eq!(
        response_len(&two[..20], ResponseKind::Retrieval, &l).unwrap(),
        None
    );
    assert_eq!(
        response_len(b"END\r\n", ResponseKind::Retrieval, &l).unwrap(),
        Some(5)
    );
    assert_eq!(
        response_len(b"SERVER_ERROR oops\r\n", ResponseKind::Retrieval, &l).unwrap(),
        Some(19)
    );
    assert_eq!(
        response_len(b"VALUE a 0 1\r\nxy\r\n", ResponseKind::Retrieval, &l).unwrap_err(),
        Error::BadResponse
    );
    assert_eq!(retrieval_values(two), &two[..two.len() - 5]);
}
