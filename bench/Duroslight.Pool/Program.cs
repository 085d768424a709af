using System.Diagnostics;
using System.Net.Sockets;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Wire;

// duroslight-pool PORT PID CONNECTIONS CONTROLLERS
// Against a running target (PID, loopback PORT): opens CONNECTIONS idle TCP connections (ICReq answered, nothing
// more) and reads the target's RSS; closes them; then connects CONTROLLERS controllers with one I/O queue each and
// reads RSS again; runs a verified 32 KiB write+read on every controller at once; expects the next Connect to be
// refused with Connect Controller Busy. Prints one line per step.
if (args.Length != 4) { Console.Error.WriteLine("usage: duroslight-pool PORT PID CONNECTIONS CONTROLLERS"); return 2; }
int port = int.Parse(args[0]), pid = int.Parse(args[1]), connections = int.Parse(args[2]), controllers = int.Parse(args[3]);
const string Nqn = "nqn.2026-11.io.duroslight:default";

long Rss()
{
    foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    return 0;
}

async Task<long> SettledRss()
{
    await Task.Delay(2000);
    return Rss();
}

long baseline = await SettledRss();
var sockets = new List<Socket>();
var icreq = new byte[PduLayout.ICReqSize];
PduWriter.ICReq(icreq, 0, false, false, 0);
var clock = Stopwatch.StartNew();
for (int i = 0; i < connections; i++)
{
    var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    await s.ConnectAsync("127.0.0.1", port);
    await s.SendAsync(icreq);
    var resp = new byte[PduLayout.ICRespSize];
    for (int got = 0; got < resp.Length;) got += await s.ReceiveAsync(resp.AsMemory(got));
    sockets.Add(s);
}
long withConnections = await SettledRss();
Console.WriteLine($"idle connections: {connections} in {clock.ElapsedMilliseconds} ms, target RSS {baseline >> 20} -> {withConnections >> 20} MiB, " +
    $"{(withConnections - baseline) / Math.Max(1, connections)} B per connection");
foreach (var s in sockets) s.Dispose();
sockets.Clear();

baseline = await SettledRss();
var hosts = new List<NvmeTcpController>();
clock.Restart();
for (int i = 0; i < controllers; i++)
    hosts.Add(await NvmeTcpController.ConnectAsync("127.0.0.1", port, Nqn, $"nqn.2014-08.org.nvmexpress:uuid:{Guid.NewGuid()}",
        new NvmeTcpControllerOptions { IoQueues = 1, HostId = Guid.NewGuid(), KeepAliveTimeoutMs = 60_000 }));
long withControllers = await SettledRss();
Console.WriteLine($"idle controllers (admin + 1 I/O queue): {controllers} in {clock.ElapsedMilliseconds} ms, target RSS {baseline >> 20} -> {withControllers >> 20} MiB, " +
    $"{(withControllers - baseline) / Math.Max(1, controllers)} B per controller");

clock.Restart();
var blocks = hosts[0].Namespaces[0].BlockCount;
await Task.WhenAll(hosts.Select(async (h, i) =>
{
    var data = new byte[32 * 1024];
    Random.Shared.NextBytes(data);
    ulong slba = (ulong)i * 8 % (blocks - 8);
    await h.WriteAsync(1, slba, 8, data);
    var seen = new byte[data.Length];
    await h.ReadAsync(1, slba, 8, seen);
    if (!data.AsSpan().SequenceEqual(seen)) throw new InvalidDataException($"controller {i}: read back differs");
}));
Console.WriteLine($"I/O on all {controllers} controllers at once: verified in {clock.ElapsedMilliseconds} ms");

int rc = 1;
try
{
    await using var extra = await NvmeTcpController.ConnectAsync("127.0.0.1", port, Nqn, "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000bad");
    Console.WriteLine($"controller {controllers + 1}: accepted (unexpected)");
}
catch (NvmeException e) when (e.Status == NvmeStatus.ConnectControllerBusy)
{
    Console.WriteLine($"controller {controllers + 1}: refused, {e.Status}");
    rc = 0;
}
foreach (var h in hosts) await h.DisposeAsync();
return rc;
