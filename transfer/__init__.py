"""OpenMMLab glue shared by the segmentation and detection sides: mmengine's Runner behind the
``tools/{seg,det}_{train,test}.py`` commands (:mod:`.runner`) and the checkpoint conversion steps both
converters share (:mod:`.convert`). mmengine is imported lazily: pretraining does not need OpenMMLab."""
