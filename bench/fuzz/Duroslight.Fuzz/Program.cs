using Duroslight.Fuzz;

// duroslight-fuzz [gftl]                 AFL++ target (run under afl-fuzz on an instrumented build; README)
// duroslight-fuzz seeds DIR              writes the receive path's seed corpus recorded from the host library
// duroslight-fuzz seeds-gftl DIR         writes the GFTL image target's seed corpus
// duroslight-fuzz replay [gftl] PATH...  runs files or folders of inputs without AFL; exit 1 on the first finding
return args switch
{
    [] => Fuzz(ReceivePath.Run),
    ["gftl"] => Fuzz(GftlImage.Run),
    ["seeds", string dir] => WriteSeeds(dir, Seeds.All(), ReceivePath.Run),
    ["seeds-gftl", string dir] => WriteSeeds(dir, GftlSeeds.All(), GftlImage.Run),
    ["replay", "gftl", .. var paths] when paths.Length > 0 => Replay(paths, GftlImage.Run),
    ["replay", .. var paths] when paths.Length > 0 => Replay(paths, ReceivePath.Run),
    _ => Usage(),
};

// In-process loop (SharpFuzz's fork-server equivalent): an exception escaping the target is reported to AFL++ as a crash.
static int Fuzz(FuzzTarget target)
{
    var buffer = new MemoryStream();
    SharpFuzz.Fuzzer.Run(stream =>
    {
        buffer.SetLength(0);
        stream.CopyTo(buffer);
        target(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    });
    return 0;
}

static int WriteSeeds(string dir, IEnumerable<(string Name, byte[] Input)> seeds, FuzzTarget target)
{
    Directory.CreateDirectory(dir);
    foreach (var (name, input) in seeds)
    {
        target(input);
        File.WriteAllBytes(Path.Combine(dir, name), input);
        Console.WriteLine($"{name}: {input.Length} bytes");
    }
    return 0;
}

static int Replay(string[] paths, FuzzTarget target)
{
    int count = 0;
    foreach (var path in paths)
    {
        var files = Directory.Exists(path) ? Directory.GetFiles(path) : [path];
        Array.Sort(files, StringComparer.Ordinal);
        foreach (var file in files)
        {
            try
            {
                target(File.ReadAllBytes(file));
                count++;
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"{file}: {e}");
                return 1;
            }
        }
    }
    Console.WriteLine($"{count} input(s) replayed, no finding");
    return 0;
}

static int Usage()
{
    Console.Error.WriteLine("usage: duroslight-fuzz [gftl | seeds DIR | seeds-gftl DIR | replay [gftl] PATH...]");
    return 2;
}

internal delegate void FuzzTarget(ReadOnlySpan<byte> input);
