"""``python -m rgbd_world.world.make_dataset``: see rgbd_world.world.dataset for the layout and options."""

from .dataset import main

if __name__ == "__main__":
    main()
