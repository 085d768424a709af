// The memory store's own copies, as fixed work on one thread, in thread CPU time per operation (holds up on a loaded
// machine better than rates): random 4 KiB reads, then sequential 128 KiB writes and reads, of a 256 MiB memory
// volume written whole first. Args: 4K reads per round, 128K operations per round, a label. Three rounds.
using System.Runtime.InteropServices;
using Duroslight.Storage.Volumes;

const long Size = 256L << 20;
int reads4K = int.Parse(args[0]), ops128K = int.Parse(args[1]);
string label = args.Length > 2 ? args[2] : "";
using var store = new MemoryVolumeStore();
var volume = store.Open(store.Create("v", Size).Id);
var big = new byte[128 * 1024];
Random.Shared.NextBytes(big);
for (long o = 0; o < Size; o += big.Length) volume.WriteAsync(o, big).GetAwaiter().GetResult();
var small = GC.AllocateArray<byte>(4096, pinned: true);
var random = new Random(42);
long offset = 0;
for (int round = 0; round < 3; round++)
{
    long c0 = ThreadCpu();
    for (int i = 0; i < reads4K; i++) volume.ReadAsync(random.Next((int)(Size / 4096)) * 4096L, small).GetAwaiter().GetResult();
    long c1 = ThreadCpu();
    for (int i = 0; i < ops128K; i++, offset = (offset + big.Length) % Size) volume.WriteAsync(offset, big).GetAwaiter().GetResult();
    long c2 = ThreadCpu();
    for (int i = 0; i < ops128K; i++, offset = (offset + big.Length) % Size) volume.ReadAsync(offset, big).GetAwaiter().GetResult();
    long c3 = ThreadCpu();
    Console.WriteLine($"{label} rr4k {(c1 - c0) / (double)reads4K:F0} ns/read  sw128k {(c2 - c1) / (double)ops128K:F0} ns/write  sr128k {(c3 - c2) / (double)ops128K:F0} ns/read");
}

static long ThreadCpu()
{
    clock_gettime(3 /* CLOCK_THREAD_CPUTIME_ID */, out var t);
    return t.Seconds * 1_000_000_000 + t.Nanoseconds;
}

[DllImport("libc")]
static extern int clock_gettime(int clock, out Timespec time);

internal struct Timespec
{
    public long Seconds;
    public long Nanoseconds;
}
