"""gunicorn config used by the tests: start intermission in each worker at boot, so idle
workers register and acknowledge pauses too."""


def post_worker_init(worker: object) -> None:
    import intermission

    intermission.start_all()
