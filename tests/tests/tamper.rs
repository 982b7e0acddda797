//! Tampering with a stopped server's segment files is found, and named by position: one flipped
//! byte inside a record makes `cairn verify --data` fail naming that record's position, and makes
//! `cairn serve` refuse to start, naming it too.

use anyhow::{Context, Result, ensure};
use cairn_e2e::{Server, event, names_position, read_all, run_cairn, segment, stream_ref};
use cairn_grpc::proto;

/// Records written before tampering.
const RECORDS: u64 = 24;
/// The records a fresh server writes itself before any client's: its policy activation.
const SERVER_RECORDS: u64 = 1;
/// The last position of the stopped ledger.
const LAST: u64 = SERVER_RECORDS + RECORDS;
/// The record that is tampered with: in the middle, so it can never pass for a torn tail.
const TAMPERED: u64 = 11;

/// Which part of the record the flipped byte is in.
#[derive(Clone, Copy, Debug)]
enum Part {
    /// The envelope (the bytes the Merkle leaf hashes).
    Envelope,
    /// The sealed payload (committed to by the envelope).
    Payload,
}

/// A stopped server's data directory with [`RECORDS`] records, each appended on its own, and the
/// records as the server returned them.
async fn stopped_ledger() -> Result<(Server, Vec<proto::Record>)> {
    let mut server = Server::start_temp(&[])?;
    let mut client = server.client().await?;
    for i in 0..RECORDS {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_be_bytes());
        let payload = format!("tamper test record {i:04} ")
            .repeat(12)
            .into_bytes();
        client
            .append(proto::AppendRequest {
                stream: Some(stream_ref("acme", "notes", &format!("f{}", i % 3))),
                expected: None,
                events: vec![event(id, "FeedbackReceived", payload)],
                actor: "user:tamper".into(),
            })
            .await?;
    }
    let records = read_all(&mut client).await?;
    ensure!(records.len() as u64 == LAST);
    drop(client);
    let status = server.terminate()?;
    ensure!(status.success(), "SIGTERM: {status}\n{}", server.stderr());
    let verify = verify_data(&server)?;
    ensure!(
        verify.status.success(),
        "verify fails before any tampering:\n{verify}"
    );
    Ok((server, records))
}

fn verify_data(server: &Server) -> Result<cairn_e2e::CliOutput> {
    run_cairn([
        "verify".as_ref(),
        "--data".as_ref(),
        server.data_dir().as_os_str(),
    ])
}

/// Flips one byte in the middle of `part` of the record at `position`, in its segment file, and
/// checks that the byte really lies in that record's frame.
fn flip(server: &Server, record: &proto::Record, part: Part) -> Result<()> {
    let bytes = match part {
        Part::Envelope => &record.envelope,
        Part::Payload => &record.sealed_payload,
    };
    let (path, at, frame) = segment::locate(server.data_dir(), bytes)
        .with_context(|| format!("finding the {part:?} of position {}", record.position))?;
    ensure!(
        frame.position == record.position,
        "the {part:?} of position {} was found in the frame of position {}",
        record.position,
        frame.position
    );
    let mut file = std::fs::read(&path)?;
    file[at + bytes.len() / 2] ^= 0x20;
    std::fs::write(&path, file)?;
    Ok(())
}

async fn check_flip_is_named(part: Part) -> Result<()> {
    let (server, records) = stopped_ledger().await?;
    let record = &records[(TAMPERED - 1) as usize];
    flip(&server, record, part)?;

    let verify = verify_data(&server)?;
    ensure!(
        !verify.status.success(),
        "cairn verify --data passed a flipped byte in the {part:?} of position {TAMPERED}:\n{verify}"
    );
    ensure!(
        names_position(&verify.text(), TAMPERED),
        "cairn verify --data does not name position {TAMPERED}:\n{verify}"
    );

    let refused = match Server::try_start(server.data_dir(), &[])? {
        Ok(mut started) => {
            let _ = started.kill();
            anyhow::bail!(
                "cairn serve started on a ledger with a flipped byte in the {part:?} of position \
                 {TAMPERED}"
            );
        }
        Err(refused) => refused,
    };
    ensure!(!refused.status.success());
    ensure!(
        names_position(&refused.output, TAMPERED),
        "cairn serve refused without naming position {TAMPERED}:\n{}",
        refused.output
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_an_envelope_is_named() -> Result<()> {
    check_flip_is_named(Part::Envelope).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_payload_is_named() -> Result<()> {
    check_flip_is_named(Part::Payload).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_change_under_a_recomputed_checksum_is_named() -> Result<()> {
    // Someone who read the segment format can fix the frame checksum; the envelope's payload
    // commitment still names the record.
    let (server, records) = stopped_ledger().await?;
    let record = &records[(TAMPERED - 1) as usize];
    let (path, at, frame) = segment::locate(server.data_dir(), &record.sealed_payload)?;
    ensure!(frame.position == TAMPERED);
    let mut file = std::fs::read(&path)?;
    file[at + record.sealed_payload.len() / 2] ^= 0x20;
    segment::reseal_frame(&mut file, &frame);
    std::fs::write(&path, file)?;

    let verify = verify_data(&server)?;
    ensure!(
        !verify.status.success(),
        "verify passed a rewritten payload:\n{verify}"
    );
    ensure!(
        names_position(&verify.text(), TAMPERED),
        "cairn verify --data does not name position {TAMPERED}:\n{verify}"
    );
    match Server::try_start(server.data_dir(), &[])? {
        Ok(_) => anyhow::bail!("cairn serve started on a rewritten payload"),
        Err(refused) => ensure!(
            names_position(&refused.output, TAMPERED),
            "cairn serve refused without naming position {TAMPERED}:\n{}",
            refused.output
        ),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_rewrite_under_a_recomputed_checksum_fails_the_audit() -> Result<()> {
    // A rewritten envelope that still decodes, with the frame checksum fixed: only the Merkle
    // tree and the checkpoint signed over it can tell. The shutdown signed a checkpoint of every
    // record, so the offline audit must fail.
    let (server, records) = stopped_ledger().await?;
    let record = &records[(TAMPERED - 1) as usize];
    let (path, at, frame) = segment::locate(server.data_dir(), &record.envelope)?;
    ensure!(frame.position == TAMPERED);
    let actor = cairn_e2e::find_all(&record.envelope, b"user:tamper");
    ensure!(actor.len() == 1, "the actor is not in the envelope once");
    let mut file = std::fs::read(&path)?;
    file[at + actor[0] + 5] = b'T';
    segment::reseal_frame(&mut file, &frame);
    std::fs::write(&path, file)?;

    // The server checks its stored checkpoints against the tree it rebuilds, and refuses.
    if let Ok(mut started) = Server::try_start(server.data_dir(), &[])? {
        let _ = started.kill();
        anyhow::bail!("cairn serve started on a rewritten envelope that a checkpoint covers");
    }
    let verify = verify_data(&server)?;
    ensure!(
        !verify.status.success(),
        "cairn verify --data passed a rewritten envelope (actor user:Tamper at position \
         {TAMPERED}) although a signed checkpoint covers it:\n{verify}"
    );
    Ok(())
}

/// What a crash during a group commit can leave at the end of the last segment.
#[derive(Clone, Copy, Debug)]
enum TornTail {
    /// A frame header announcing a full body, and only half of that body.
    HalfAFrame,
    /// A whole frame whose body does not match its checksum (not all of it reached the disk).
    BadChecksum,
}

/// A torn tail was never acknowledged: the offline audit reports it without failing, and the
/// server cuts it, starts, and goes on from the last acknowledged record.
async fn check_torn_tail_is_cut(tail: TornTail) -> Result<()> {
    let (mut server, records) = stopped_ledger().await?;
    let last = records.last().context("records")?;
    let (path, _, frame) = segment::locate(server.data_dir(), &last.envelope)?;
    ensure!(frame.position == LAST);
    let mut bytes = std::fs::read(&path)?;
    // After the last frame: the end of the file, or zero padding (a preallocated segment).
    let end = frame.body.end;
    ensure!(
        bytes[end..].iter().all(|&byte| byte == 0),
        "the last record's frame is followed by something other than padding"
    );
    let mut last_frame = bytes[frame.offset..end].to_vec();
    match tail {
        TornTail::HalfAFrame => last_frame.truncate(last_frame.len() / 2),
        TornTail::BadChecksum => {
            let middle = last_frame.len() / 2;
            last_frame[middle] ^= 0xff;
        }
    }
    if bytes.len() < end + last_frame.len() {
        bytes.resize(end + last_frame.len(), 0);
    }
    bytes[end..end + last_frame.len()].copy_from_slice(&last_frame);
    std::fs::write(&path, &bytes)?;

    let verify = verify_data(&server)?;
    ensure!(
        verify.status.success(),
        "cairn verify --data fails on a torn tail ({tail:?}):\n{verify}"
    );
    server
        .restart()
        .with_context(|| format!("cairn serve on a torn tail ({tail:?})"))?;
    let mut client = server.client().await?;
    let now = read_all(&mut client).await?;
    ensure!(
        now.len() == records.len()
            && now
                .iter()
                .zip(&records)
                .all(|(a, b)| a.envelope == b.envelope && a.sealed_payload == b.sealed_payload),
        "after cutting the torn tail ({tail:?}) the ledger is not what was acknowledged"
    );
    let answer = client
        .append(proto::AppendRequest {
            stream: Some(stream_ref("acme", "notes", "after-the-cut")),
            expected: None,
            events: vec![event([0xee; 16], "FeedbackReceived", b"after".to_vec())],
            actor: "user:tamper".into(),
        })
        .await?
        .into_inner();
    ensure!(answer.first_position == LAST + 1, "{answer:?}");
    drop(client);
    ensure!(
        server.terminate()?.success(),
        "SIGTERM:\n{}",
        server.stderr()
    );
    let verify = verify_data(&server)?;
    ensure!(verify.status.success(), "after the cut:\n{verify}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_of_half_a_frame_is_cut() -> Result<()> {
    check_torn_tail_is_cut(TornTail::HalfAFrame).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_failing_its_checksum_is_cut() -> Result<()> {
    check_torn_tail_is_cut(TornTail::BadChecksum).await
}
