"""DETR + GAL on COCO-format detection data (Table IV of the paper, Sec. V-B)."""
