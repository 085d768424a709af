using Duroslight.Fuzz;

// duroslight-fuzz                  AFL++ target (run under afl-fuzz on an instrumented build; README)
// duroslight-fuzz seeds DIR        writes the seed corpus recorded from the host library
// duroslight-fuzz replay PATH...   runs files or folders of inputs without AFL; exit 1 on the first finding
return args.Length == 0 ? Fuzz() : args[0] switch
{
    "seeds" when args.Length == 2 => WriteSeeds(args[1]),
    "replay" when args.Length >= 2 => Replay(args[1..]),
    _ => Usage(),
};

// In-process loop (SharpFuzz's fork-server equivalent): an exception escaping Run is reported to AFL++ as a crash.
static int Fuzz()
{
    var buffer = new MemoryStream();
    SharpFuzz.Fuzzer.Run(stream =>
    {
        buffer.SetLength(0);
        stream.CopyTo(buffer);
        ReceivePath.Run(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    });
    return 0;
}

static int WriteSeeds(string dir)
{
    Directory.CreateDirectory(dir);
    foreach (var (name, input) in Seeds.All())
    {
        ReceivePath.Run(input);
        File.WriteAllBytes(Path.Combine(dir, name), input);
        Console.WriteLine($"{name}: {input.Length} bytes");
    }
    return 0;
}

static int Replay(string[] paths)
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
                ReceivePath.Run(File.ReadAllBytes(file));
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
    Console.Error.WriteLine("usage: duroslight-fuzz [seeds DIR | replay PATH...]");
    return 2;
}
