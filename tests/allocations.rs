//! No allocation per packet in the steady state: allocations come with flows, names and
//! messages (a new flow, a DNS message, a ClientHello), never with the bulk of a flow's
//! packets. Counted with a counting global allocator around a replay of the generated bench
//! mix, where most packets are full-size segments of established TLS flows.
mod common;

use common::TempDir;
use egresswatch::config::Config;
use egresswatch::generate::{GenerateOptions, Scenario, generate};
use egresswatch::pipeline::{ReplayOptions, replay};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's allocations, for tests that run beside others in this binary.
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwards the caller's layout to the system allocator unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn allocations_follow_flows_and_messages_not_packets() {
    let dir = TempDir::new("alloc", "bench");
    let pcap = dir.path("bench.pcap");
    let opts = GenerateOptions {
        scenario: Scenario::Bench,
        seed: 7,
        packets: 200_000,
        ..Default::default()
    };
    generate(&opts, &pcap, None).unwrap();
    let config = Config::default();
    for threads in [1, 2] {
        let options = ReplayOptions {
            threads,
            ..Default::default()
        };
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let report = replay(&config, std::slice::from_ref(&pcap), &options, &mut |_| {
            Ok(())
        })
        .unwrap();
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        let s = &report.stats;
        // What allocates, once each: a flow (its reassembly and name state, a few boxes),
        // a parsed message (its names), an alert.
        let occasions = s.flows + s.dns_messages + s.tls_client_hellos + s.http_requests;
        eprintln!(
            "{threads} thread(s): {allocations} allocations for {} frames, {occasions} flows and \
             messages: {:.3} per frame, {:.1} per flow or message",
            s.frames,
            allocations as f64 / s.frames as f64,
            allocations as f64 / occasions as f64
        );
        assert_eq!(s.frames, 200_000);
        // Per-packet allocation would be at least one per frame; flows, messages and (with
        // shard workers) their event copies and per-tick rounds come to about a quarter here.
        assert!(
            allocations < s.frames / 2,
            "{allocations} allocations for {} frames",
            s.frames
        );
    }
}

/// Found by the `dns` fuzz target (tests/data/fuzz/): an 894-byte message whose 28 questions
/// run through bit-string labels and pointers took 20 ms to parse, because every hex byte of
/// a bit-string label's text was a `format!` (321,343 allocations). Names are built in a fixed
/// buffer: allocations come per name, not per byte. (A failure here also inflates the other
/// test's count: the panic's backtrace allocates.)
#[test]
fn a_dns_message_of_bit_string_labels_allocates_per_name_not_per_byte() {
    let message = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fuzz/dns-bit-string-labels.bin"
    ))
    .unwrap();
    let before = THREAD_ALLOCATIONS.with(Cell::get);
    let parsed = egresswatch::decode::dns::parse_message(&message).unwrap();
    let allocations = THREAD_ALLOCATIONS.with(Cell::get) - before;
    // The walking budget (2 steps a byte) keeps a few of the 28 questions.
    let names = (parsed.questions.len() + parsed.answers.len()) as u64;
    assert!(names >= 1);
    assert!(
        allocations <= 4 * names + 4,
        "{allocations} allocations for {names} names"
    );
}
