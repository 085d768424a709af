using BenchmarkDotNet.Running;

// `gftl [DIR]` runs the storage runner (wall-clock, medians); anything else goes to BenchmarkDotNet.
if (args.Length > 0 && args[0] == "gftl")
{
    return await Duroslight.Bench.GftlBench.RunAsync(args[1..]);
}

BenchmarkSwitcher.FromAssembly(typeof(Duroslight.Bench.EngineBenchmarks).Assembly).Run(args);
return 0;
