using BenchmarkDotNet.Running;

// `gftl [DIR]` runs the storage runner (wall-clock, medians); `crc` the CRC32C min-of-samples comparison; anything
// else goes to BenchmarkDotNet.
if (args.Length > 0 && args[0] == "gftl")
{
    return await Duroslight.Bench.GftlBench.RunAsync(args[1..]);
}

if (args.Length > 0 && args[0] == "crc")
{
    return Duroslight.Bench.Crc32CSamples.Run();
}

BenchmarkSwitcher.FromAssembly(typeof(Duroslight.Bench.EngineBenchmarks).Assembly).Run(args);
return 0;
