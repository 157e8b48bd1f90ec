from mi_worker.cli import main

main(prog_name="mi-worker")
