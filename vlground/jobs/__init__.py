"""The one batch-job mechanism behind `detect`, `label`, `ocr` and `bench`.

    inputs (vlground.io.sources.expand) -> tasks (one per input or page, each with its resume key)
      -> a worker (what the job does to a list of inputs, built where it runs)
      -> an executor (in this process, a pool of processes, or Ray: `vlground.jobs.executors`)
      -> one sink (vlground.io.sink: resume, --retry-failed, overwrite) -> progress, Ctrl-C, summary

`run_tasks` (`vlground.jobs.loop`) is the loop; a job is a worker plus the records it writes. Every
executor obeys one crash-isolation rule (`vlground.jobs.isolation.isolated`): a batch that fails (an
exception, a worker process that dies) is run again one input at a time, and an input that fails
alone gets an error record while the others go on."""
